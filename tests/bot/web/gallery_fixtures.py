"""The bot and its web gallery running together against the loopback fake Discord, as `imaginebot run`
serves them, and a member's `/gallery` link read from the bot's answer.

`async with gallery_bot(fake, tmp_path, backend) as (world, base):` — `base` is the gallery's address.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bot.web import serve_gallery
from engine.backend import Backend
from fakediscord import FakeDiscord
from tests.bot.discord_fixtures import BotWorld, make_config, started_bot

__all__ = ["free_port", "gallery_bot", "gallery_link"]

_LINK = re.compile(r"\]\((http://[^)\s]+/login\?t=[A-Za-z0-9_.-]+)\)")


def free_port() -> int:
    """A port nothing listens on now (the gallery's address must be known before the bot starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def gallery_bot(
    fake: FakeDiscord, data_dir: Path, backend: Backend | None, **config: Any
) -> AsyncIterator[tuple[BotWorld, str]]:
    """The bot with its gallery on a free port of 127.0.0.1; `/gallery` links point there."""
    port = free_port()
    settings = make_config(data_dir, web_port=port, **config)
    async with (
        started_bot(fake, settings, backend) as world,
        serve_gallery(world.services, guild_name=lambda _: "Fake Guild") as gallery,
    ):
        assert gallery.url == f"http://127.0.0.1:{port}"
        yield world, gallery.url


async def gallery_link(fake: FakeDiscord, user: Any) -> str:
    """What `/gallery` answers `user` privately: their sign-in link."""
    answer = await (await fake.slash("gallery", {}, user=user)).response(timeout=3)
    assert answer.data["flags"] & 64, "the link must be ephemeral"
    match = _LINK.search(answer.data["content"])
    assert match is not None, answer.data["content"]
    return match.group(1)
