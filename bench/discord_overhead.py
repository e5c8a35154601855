"""Benchmark: what the Discord bot adds on top of the engine, through the loopback fake Discord.

For each /imagine, the time from the fake dispatching INTERACTION_CREATE to the grid message (the
revision that carries the 9 buttons) divided by the engine's own time for that job
(`GenerationResult.elapsed_s`, stored as the job's GPU seconds). Target: ≤ 1.10. Jobs run one at a
time for that figure, then several users at once; through both phases the largest gap between the
bot's gateway heartbeats must stay within 10% of the heartbeat interval (the event loop never stalls).

    .venv/bin/python -m bench.discord_overhead [--model tiny] [--rounds 5] [--steps 20] [--concurrent 4]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from bot.client import ImagineBot
from bot.config import Config
from bot.services import Services, open_services
from bot.store import queries as q
from engine.backend import Backend
from fakediscord import FakeConfig, FakeDiscord, MessageRecord, run_bot


def _load(model: str) -> Backend:
    from engine.backends import load_backend

    return load_backend(model, device="cpu")


def _grid_at(message: MessageRecord) -> float:
    return next(revision.at for revision in message.history if len(revision.components) == 2)


async def _one(fake: FakeDiscord, services: Services, prompt: str, user: object) -> tuple[float, float]:
    """(Discord wall time, engine time) for one /imagine."""
    interaction = await fake.slash("imagine", {"prompt": prompt}, user=user)
    message = await interaction.wait_original(timeout=10)
    await fake.wait_for(lambda _: len(message.custom_ids()) == 9, timeout=600, what=f"grid of {prompt!r}")
    job_id = message.custom_ids()[0].split(":")[2]
    await services.jobs.wait_idle()
    async with services.db.session(read_only=True) as session:
        job = await q.get_job(session, job_id)
        assert job is not None
        engine_s = job.gpu_seconds
    return _grid_at(message) - interaction.dispatched_at, engine_s


def _gap_in(beats: list[float], start: float, end: float) -> float:
    inside = [b for b in beats if start <= b <= end]
    return max((b - a for a, b in itertools.pairwise(inside)), default=0.0)


async def run(args: argparse.Namespace) -> None:
    backend = await asyncio.to_thread(_load, args.model)
    interval_s = args.heartbeat_ms / 1000
    with tempfile.TemporaryDirectory() as data:
        config = Config(_env_file=None, data_dir=Path(data), model=args.model, progress_interval_s=0.5)  # type: ignore[call-arg]
        async with (
            FakeDiscord(FakeConfig(heartbeat_interval_ms=args.heartbeat_ms)) as fake,
            open_services(config, backend=backend) as services,
            run_bot(ImagineBot(services), fake),
        ):
            # Warm-up: the first call pays for lazy initialisation in torch and diffusers.
            await _one(fake, services, f"a red circle --steps {args.steps} --seed 999", fake.member)

            start = time.monotonic()
            ratios = []
            for i in range(args.rounds):
                wall, engine = await _one(
                    fake, services, f"a red circle --steps {args.steps} --seed {i}", fake.member
                )
                ratios.append(wall / engine)
                print(
                    f"round {i + 1}: discord {wall:.3f} s, engine {engine:.3f} s, ratio {wall / engine:.3f}"
                )
            sequential_gap = _gap_in(fake.state.heartbeats, start, time.monotonic())

            start = time.monotonic()
            users = [fake.member, fake.other_member, fake.admin]
            batch = [
                _one(
                    fake,
                    services,
                    f"a blue square --steps {args.steps} --seed {100 + i}",
                    users[i % len(users)],
                )
                for i in range(args.concurrent)
            ]
            await asyncio.gather(*batch)
            concurrent_s = time.monotonic() - start
            concurrent_gap = _gap_in(fake.state.heartbeats, start, time.monotonic())

    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"model: {args.model}, {args.steps} steps, 4 images per job")
    print(
        f"INTERACTION_CREATE → grid / engine time over {args.rounds} jobs: "
        f"median {statistics.median(ratios):.3f}, max {max(ratios):.3f} (target ≤ 1.10)"
    )
    print(
        f"heartbeat interval {interval_s:.2f} s; largest gap while jobs ran: sequential "
        f"{sequential_gap:.3f} s ({sequential_gap / interval_s:.3f}×), {args.concurrent} at once "
        f"{concurrent_gap:.3f} s ({concurrent_gap / interval_s:.3f}×) (target ≤ 1.10×); "
        f"the concurrent batch took {concurrent_s:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="IMAGINE_MODEL value (default: tiny)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=4)
    parser.add_argument("--heartbeat-ms", type=int, default=1000, help="gateway heartbeat interval")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
