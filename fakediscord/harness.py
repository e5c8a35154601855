"""Pytest-side helpers: redirecting discord.py to a fake, and `run_bot`, which starts a bot against
it, collects handler exceptions, and fails the test if any happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import discord
import discord.gateway
import discord.http
import yarl
from discord import app_commands

from fakediscord.server import FakeDiscord

__all__ = ["HandlerError", "RunningBot", "redirect_discord", "run_bot"]


@contextlib.contextmanager
def redirect_discord(fake: FakeDiscord) -> Iterator[None]:
    """Point discord.py's REST base and gateway at `fake`; restore them afterwards."""
    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


@dataclass(frozen=True)
class HandlerError:
    """An exception that reached one of discord.py's "ignoring exception" handlers."""

    where: str
    error: BaseException

    def __str__(self) -> str:
        return f"{self.where}: {type(self.error).__name__}: {self.error}"


@dataclass
class RunningBot:
    """What `run_bot` yields: the bot, the fake, and the handler errors collected so far."""

    bot: discord.Client
    fake: FakeDiscord
    errors: list[HandlerError] = field(default_factory=list)

    def record(self, where: str, error: BaseException) -> None:
        if not any(e.error is error for e in self.errors):
            self.errors.append(HandlerError(where, error))
            self.fake.state.notify()

    async def wait_for_error(self, timeout: float = 5.0) -> HandlerError:  # noqa: ASYNC109 - bounded wait
        """Wait until a handler exception has been collected; return the first."""
        await self.fake.wait_for(lambda _: bool(self.errors), timeout=timeout, what="a handler exception")
        return self.errors[0]

    def take_errors(self) -> list[HandlerError]:
        """Return and forget the errors so far (for a test that expects one)."""
        taken, self.errors[:] = list(self.errors), []
        return taken


class _ErrorLog(logging.Handler):
    """Backstop: discord.py's default handlers log with exc_info at ERROR; catch those too."""

    def __init__(self, running: RunningBot) -> None:
        super().__init__(logging.ERROR)
        self.running = running

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.running.record(f"logged by {record.name}", record.exc_info[1])


@contextlib.contextmanager
def _collect_errors(running: RunningBot, loggers: Sequence[str]) -> Iterator[None]:
    """Wrap the library's default error handlers at class level (instances can't be patched before
    discord.py creates them); a handler a bot overrides itself counts as handling the error. A
    traceback logged at ERROR on one of `loggers` counts too."""
    originals: list[tuple[type, Any]] = []

    def wrap(cls: type, where: str, error_index: int) -> None:
        original = cls.__dict__["on_error"]

        async def on_error(self: Any, *args: Any, **kwargs: Any) -> None:
            import sys

            error = args[error_index] if error_index >= 0 and len(args) > error_index else sys.exc_info()[1]
            if isinstance(error, BaseException):
                running.record(f"{where} ({args[0]!r})", error)
            await original(self, *args, **kwargs)

        originals.append((cls, original))
        cls.on_error = on_error  # type: ignore[attr-defined]

    wrap(discord.Client, "Client.on_error", -1)
    wrap(app_commands.CommandTree, "CommandTree.on_error", 1)
    wrap(discord.ui.view.BaseView, "View.on_error", 1)
    wrap(discord.ui.Modal, "Modal.on_error", 1)
    log_handler = _ErrorLog(running)
    for name in loggers:
        logging.getLogger(name).addHandler(log_handler)
    try:
        yield
    finally:
        for name in loggers:
            logging.getLogger(name).removeHandler(log_handler)
        for cls, original in originals:
            cls.on_error = original  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def run_bot(
    bot: discord.Client,
    fake: FakeDiscord,
    *,
    token: str = "fake-bot-token",
    timeout: float = 10.0,  # noqa: ASYNC109 - a bounded wait is this helper's API
    require_sync: bool = True,
    fast_ready: bool = True,
    allow_unknown_routes: bool = False,
    error_loggers: Sequence[str] = ("discord",),
) -> AsyncIterator[RunningBot]:
    """Start `bot` against `fake` (reconnect=False), wait for READY and its command sync, yield, then
    close it and fail the test if any handler exception happened.

    `fast_ready` shortens discord.py's wait for more GUILD_CREATEs after READY (2 s by default) and,
    unless the bot overrides `before_identify_hook`, skips its 5 s pause before each shard's IDENTIFY
    after the first (Discord's identify rate limit, which the fake does not enforce).
    A REST call to a route the fake does not know also fails the test unless `allow_unknown_routes`.
    `error_loggers` names the loggers whose tracebacks at ERROR fail the test (add the bot's own).
    """
    running = RunningBot(bot, fake)
    if fast_ready:
        bot._connection.guild_ready_timeout = 0.05
        if type(bot).before_identify_hook is discord.Client.before_identify_hook:
            bot.before_identify_hook = _identify_at_once  # type: ignore[method-assign]
    syncs_before = len(fake.state.command_syncs)
    unknown_before = len(fake.state.unknown_routes)
    crashes_before = len(fake.state.internal_errors)
    with redirect_discord(fake), _collect_errors(running, error_loggers):
        task = asyncio.create_task(bot.start(token, reconnect=False), name="fakediscord-bot")
        try:
            await _wait_started(bot, task, timeout)
            if require_sync:
                await fake.wait_for(
                    lambda s: len(s.command_syncs) > syncs_before,
                    timeout=timeout,
                    what="the bot to sync its commands (sync in setup_hook, or pass require_sync=False)",
                )
            yield running
        finally:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bot.close(), timeout=10.0)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=5.0)
            if not task.done():
                task.cancel()
    crashes = fake.state.internal_errors[crashes_before:]
    if crashes:
        raise AssertionError("the fake Discord itself failed (a bug in fakediscord): " + "; ".join(crashes))
    unknown = fake.state.unknown_routes[unknown_before:]
    if unknown and not allow_unknown_routes:
        routes = ", ".join(f"{r.method} {r.path}" for r in unknown)
        raise AssertionError(f"the bot called routes the fake Discord does not know (answered 404): {routes}")
    if running.errors:
        details = "\n".join(f"  - {e}" for e in running.errors)
        raise AssertionError(
            f"{len(running.errors)} exception(s) reached discord.py's error handlers:\n{details}"
        ) from (running.errors[0].error)


async def _identify_at_once(shard_id: int | None, *, initial: bool = False) -> None:
    """`before_identify_hook` without discord.py's 5 s pause between shards."""


async def _wait_started(bot: discord.Client, task: asyncio.Task[None], timeout: float) -> None:  # noqa: ASYNC109 - a bounded wait is this helper's API
    ready = asyncio.create_task(bot.wait_until_ready())
    try:
        done, _ = await asyncio.wait({ready, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
    if task in done:
        error = task.exception()
        raise AssertionError(f"the bot stopped before it was ready: {error!r}") from error
    if ready not in done:
        raise AssertionError(f"the bot was not ready within {timeout}s")
