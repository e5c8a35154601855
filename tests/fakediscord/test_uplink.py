"""The fake's simulated uplink: an upload's answer comes no sooner than its bytes could cross it."""

from __future__ import annotations

import io

import discord
from discord.ext import commands

from fakediscord.harness import run_bot
from fakediscord.server import FakeConfig, FakeDiscord

UPLOAD = bytes(range(256)) * 800  # 200 KiB


def make_bot() -> commands.Bot:
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.default())

    @bot.tree.command(description="answer with a 200 KiB file")
    async def upload(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("here", file=discord.File(io.BytesIO(UPLOAD), "u.bin"))

    async def setup_hook() -> None:
        await bot.tree.sync()

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    return bot


async def _upload_request_s(config: FakeConfig) -> tuple[float, int]:
    """(seconds from the upload's arrival to its answer, bytes counted) for one 200 KiB upload."""
    async with FakeDiscord(config) as fake, run_bot(make_bot(), fake):
        record = await fake.slash("upload")
        await record.response(timeout=10)
        (request,) = [r for r in fake.state.requests if r.path.endswith("/callback")]
    assert request.received_at is not None
    return request.at - request.received_at, request.body_bytes


async def test_an_upload_takes_its_bytes_over_the_uplink_rate() -> None:
    rate = 1_000_000  # bytes/s: 200 KiB take ≥ 0.2 s
    took, size = await _upload_request_s(FakeConfig(uplink_bytes_per_s=rate))
    assert len(UPLOAD) <= size < len(UPLOAD) + 2048  # the file plus its JSON part and framing
    assert took >= size / rate - 0.005


async def test_without_an_uplink_rate_an_upload_is_answered_at_loopback_speed() -> None:
    took, size = await _upload_request_s(FakeConfig())
    assert size >= len(UPLOAD)
    assert took < 0.2
