"""Benchmark of the loopback fake Discord: what a bot test pays for driving the real discord.py client.

Run from the repository root:  .venv/bin/python -m bench.fake_discord [--interactions 200]

Prints:
- start-up: `run_bot` entry (login, gateway handshake, READY, GUILD_CREATE, command sync) in ms;
- slash command round trip (dispatch → bot's callback recorded) p50 / p95 / max in ms, for a
  command answering with a 64 KiB PNG-sized file, so multipart parsing is included;
- the largest gap between the bot's heartbeats at a 100 ms interval while that runs, in ms
  (the heartbeat thread's baseline when nothing blocks the loop).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import os
import platform
import statistics
import time

import discord
from discord.ext import commands

from fakediscord import FakeConfig, FakeDiscord, run_bot

PAYLOAD = bytes(range(256)) * 256  # 64 KiB


def make_bot() -> commands.Bot:
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.default())

    @bot.tree.command(description="reply with a file")
    async def picture(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("here", file=discord.File(io.BytesIO(PAYLOAD), "p.png"))

    async def setup_hook() -> None:
        await bot.tree.sync()

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    return bot


async def main(interactions: int) -> None:
    async with FakeDiscord(FakeConfig(heartbeat_interval_ms=100)) as fake:
        started = time.perf_counter()
        async with run_bot(make_bot(), fake):
            startup_ms = (time.perf_counter() - started) * 1000
            first_beat = len(fake.state.heartbeats)
            latencies: list[float] = []
            for _ in range(interactions):
                record = await fake.slash("picture")
                await record.response(timeout=5)
                assert record.ack_latency is not None
                latencies.append(record.ack_latency * 1000)
            beats = fake.state.heartbeats[first_beat:]
        gaps = [(b - a) * 1000 for a, b in itertools.pairwise(beats)]
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"startup: {startup_ms:.0f} ms")
    print(
        f"slash round trip over {interactions}: p50 {statistics.median(latencies):.1f} ms, "
        f"p95 {p95:.1f} ms, max {latencies[-1]:.1f} ms"
    )
    print(f"heartbeats: {len(beats)} at 100 ms, largest gap {max(gaps, default=0):.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=200)
    asyncio.run(main(parser.parse_args().interactions))
