from __future__ import annotations

import aiohttp
import discord
import pytest

from bot.presenter import with_retries


class _Response:
    """The two attributes discord.HTTPException reads from a response."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.reason = "injected"


async def test_transient_failures_are_retried_then_succeed() -> None:
    failures: list[BaseException] = [
        discord.DiscordServerError(_Response(503), "down"),  # type: ignore[arg-type]
        TimeoutError(),
        aiohttp.ClientConnectionError("reset"),
    ]

    async def action() -> str:
        if failures:
            raise failures.pop(0)
        return "posted"

    assert await with_retries(action, what="test", delays=(0, 0, 0)) == "posted"
    assert failures == []


async def test_client_errors_are_not_retried() -> None:
    calls = 0

    async def action() -> None:
        nonlocal calls
        calls += 1
        raise discord.NotFound(_Response(404), "gone")  # type: ignore[arg-type]

    with pytest.raises(discord.NotFound):
        await with_retries(action, what="test", delays=(0, 0))
    assert calls == 1


async def test_it_gives_up_after_the_last_delay() -> None:
    calls = 0

    async def action() -> None:
        nonlocal calls
        calls += 1
        raise TimeoutError

    with pytest.raises(TimeoutError):
        await with_retries(action, what="test", delays=(0, 0))
    assert calls == 3
