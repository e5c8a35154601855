"""Benchmark: the OpenAI engine against the loopback fake Images API answering in a fixed time.

1. Engine: a grid from a model limited to `n=1` (four calls at once) against one call of the same
   model. Target: grid ≤ 1.2 × one call.
2. Bot: /imagine through the loopback fake Discord on `openai:gpt-image-1` (one streamed call with
   n=4 and partial images), from INTERACTION_CREATE to the grid message with its buttons, against
   the API's own time for the job (first byte in to last byte out, as the fake measured it).
   Target: ≤ 1.05 × the API's time. The process's CPU time per round (the bot and both fakes share
   it) shows how much of the wall time is work and how much is waiting for a busy CPU.

    .venv/bin/python -m bench.hosted [--api-s 2.0] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bot.client import ImagineBot
from bot.config import Config
from bot.services import open_services
from bot.store import queries as q
from engine.backends import load_backend
from engine.backends.hosted import HostedSettings
from engine.types import GenerationRequest
from fakediscord import FakeDiscord, MessageRecord, run_bot
from tests.fakeopenai import FakeImagesAPI, ModelRules, fake_images_api

KEY = "sk-bench"
PARTIALS_S = 0.05
"""The fake's gap before each streamed partial image (2 per image, 4 images: 0.4 s of the API's time)."""


def _generate(spec: str, count: int, base_url: str) -> float:
    backend = load_backend(spec, device="cpu", hosted=HostedSettings(api_key=KEY, base_url=base_url))
    try:
        began = time.monotonic()
        backend.generate(
            GenerationRequest(prompt="a harbour at dawn", count=count),
            on_progress=lambda progress: None,
            cancelled=threading.Event(),
        )
        return time.monotonic() - began
    finally:
        backend.close()


async def engine_part(api: FakeImagesAPI, rounds: int) -> tuple[float, float]:
    """(median one-call seconds, median grid seconds) for a model limited to n=1."""
    api.models["one-at-a-time"] = ModelRules(max_n=1)
    spec = "openai:one-at-a-time,max_n=1,stream=false"
    singles, grids = [], []
    for _ in range(rounds):
        singles.append(await asyncio.to_thread(_generate, spec, 1, api.base_url))
        grids.append(await asyncio.to_thread(_generate, spec, 4, api.base_url))
    return statistics.median(singles), statistics.median(grids)


def _grid_at(message: MessageRecord) -> float:
    return next(revision.at for revision in message.history if len(revision.components) == 2)


async def bot_part(api: FakeImagesAPI, rounds: int) -> list[tuple[float, float, float]]:
    """(Discord wall seconds, API seconds, engine seconds) per /imagine; the engine's time is the API's
    plus decoding its pictures and cropping them."""
    out: list[tuple[float, float, float]] = []
    with tempfile.TemporaryDirectory() as data:
        config = Config(  # type: ignore[call-arg]
            _env_file=None,
            data_dir=Path(data),
            model="openai:gpt-image-1",
            openai_api_key=KEY,
            openai_base_url=api.base_url,
            progress_interval_s=0.5,
        )
        async with (
            FakeDiscord() as fake,
            open_services(config) as services,
            run_bot(ImagineBot(services), fake),
        ):
            for i in range(rounds + 1):  # the first is a warm-up (connections, lazy imports)
                before = len(api.image_requests())
                cpu = time.process_time()
                interaction = await fake.slash("imagine", {"prompt": "a harbour at dawn"})
                message = await interaction.wait_original(timeout=10)
                await fake.wait_for(
                    lambda _, m=message: len(m.custom_ids()) == 9, timeout=60, what="the grid"
                )
                await services.jobs.wait_idle()
                calls = api.image_requests()[before:]
                api_s = max(c.done for c in calls) - min(c.at for c in calls)
                wall = _grid_at(message) - interaction.dispatched_at
                cpu = time.process_time() - cpu
                job_id = message.custom_ids()[0].split(":")[2]
                async with services.db.session(read_only=True) as session:
                    job = await q.get_job(session, job_id)
                    assert job is not None
                    engine_s = job.gpu_seconds
                if i:
                    out.append((wall, api_s, engine_s))
                    print(
                        f"round {i}: discord {wall:.3f} s, API {api_s:.3f} s, engine {engine_s:.3f} s, "
                        f"ratio {wall / api_s:.3f}; CPU of this process (bot, both fakes) {cpu:.3f} s"
                    )
    return out


async def run(args: argparse.Namespace) -> None:
    async with fake_images_api(api_key=KEY, delay_s=args.api_s) as api:
        single, grid = await engine_part(api, args.rounds)
        api.delay_s = args.api_s - 8 * PARTIALS_S  # the streamed answer then also takes api_s in all
        api.partial_delay_s = PARTIALS_S
        rounds = await bot_part(api, args.rounds)
    ratios = [wall / api_s for wall, api_s, _ in rounds]
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"fake Images API answering in {args.api_s:.1f} s; {args.rounds} rounds each")
    print(
        f"engine, model limited to n=1: one call {single:.3f} s, grid of 4 {grid:.3f} s, "
        f"ratio {grid / single:.3f} (target ≤ 1.2)"
    )
    added = statistics.median(wall - api_s for wall, api_s, _ in rounds)
    decoding = statistics.median(engine_s - api_s for _, api_s, engine_s in rounds)
    print(
        f"bot, INTERACTION_CREATE → grid / API time: median {statistics.median(ratios):.3f}, "
        f"max {max(ratios):.3f} (target ≤ 1.05); median added {added:.3f} s, of which the engine "
        f"(decoding, cropping) {decoding:.3f} s and the bot (saving, posting) {added - decoding:.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-s", type=float, default=2.0, help="seconds the fake API takes per call")
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
