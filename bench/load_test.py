"""Load test: many members at once, through the loopback fake Discord, on remote workers.

Run from the repository root (Redis 7 on 127.0.0.1:6379, or --url):
    .venv/bin/python -m bench.load_test [--members 50] [--prompts 10] [--workers 4] [--seconds 0.2]

The real bot (`bot.services` with `IMAGINE_QUEUE_URL`, `ImagineBot`) runs in this process against the
fake Discord; `--workers` `imaginebot worker` subprocesses run the jobs on a simulated GPU of T seconds.
Every member types `--prompts` /imagine, each after a think time (`--think`, 2–6 s: with 50 members
about 12 a second, 60 % of what 4 workers at 0.2 s can run), then presses U1 and V1 on their first
grid. Prints, against the issue's targets: every job delivered exactly once (one grid or upscale post
per job, every row succeeded), interaction acknowledgements p99 within 3 s, no Discord rule broken,
the bot's event-loop lag p99 < 20 ms, and the bot's memory (RSS) across the run. The fake Discord runs
in the bot's process and event loop, so every figure here includes its cost as well.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from bench._lag import LagMeter
from bench._workers import WorkerPool
from bot.client import ImagineBot
from bot.config import Config
from bot.services import Services, open_services
from bot.store.models import UNFINISHED, Job, JobStatus
from fakediscord import FakeConfig, FakeDiscord, InteractionRecord, MessageRecord, run_bot
from fakediscord.payloads import FakeMember, FakeUser, new_snowflake


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def sample_memory(samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(rss_mib())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)


async def member_session(
    fake: FakeDiscord, member: FakeMember, args: argparse.Namespace, rng: random.Random
) -> list[InteractionRecord]:
    """A member's /imagines, each after a think time; then U1 and V1 on their first grid."""
    sent = []
    for n in range(args.prompts):
        await asyncio.sleep(rng.uniform(*args.think))
        sent.append(
            await fake.slash("imagine", {"prompt": f"a lighthouse {n} by {member.user.name}"}, user=member)
        )
    first = await sent[0].wait_original(timeout=600)
    await fake.wait_for(lambda _: len(first.custom_ids()) == 9, timeout=600, what="the first grid")
    for label in ("ib:u:", "ib:v:"):
        await asyncio.sleep(rng.uniform(*args.think))
        custom = next(c for c in first.custom_ids() if c.startswith(label) and c.endswith(":1"))
        sent.append(await fake.click(first, custom, user=member))
    return sent


async def finished(services: Services, expected: int) -> None:
    """Wait until `expected` jobs have ended, asking the database twice a second."""
    while True:
        async with services.db.session(read_only=True) as session:
            done = await session.scalar(
                select(func.count()).select_from(Job).where(Job.status.not_in(UNFINISHED))
            )
        if done is not None and done >= expected:
            return
        await asyncio.sleep(0.5)


async def run(args: argparse.Namespace) -> None:
    model = f"simulated:seconds={args.seconds},steps=10,previews=true"
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as data:
        async with (
            WorkerPool(args.url, model, args.workers, lease_s=10) as pool,
            FakeDiscord(FakeConfig()) as fake,
        ):
            config = Config(  # type: ignore[call-arg]
                _env_file=None,
                discord_token="fake-bot-token",
                data_dir=Path(data),
                database_url_setting=args.database_url,
                model=model,
                queue_url=args.url,
                queue_prefix=pool.prefix,
                lease_s=10,
                max_waiting_per_owner=args.prompts + 2,
            )
            members = [
                FakeMember(user=FakeUser(id=new_snowflake(), name=f"m{n}")) for n in range(args.members)
            ]
            memory: list[float] = []
            stop = asyncio.Event()
            async with open_services(config) as services, run_bot(ImagineBot(services), fake) as _running:
                sampler = asyncio.create_task(sample_memory(memory, stop))
                began = time.perf_counter()
                with LagMeter() as lag:
                    sessions = [member_session(fake, m, args, rng) for m in members]
                    interactions = [i for sent in await asyncio.gather(*sessions) for i in sent]
                    await asyncio.wait_for(finished(services, len(interactions)), timeout=1800)
                    await services.jobs.wait_idle()
                answered = [await i.wait_original(timeout=60) for i in interactions]
                acks = sorted(i.ack_latency or float("inf") for i in interactions)
                elapsed = time.perf_counter() - began
                stop.set()
                await sampler
                jobs = await all_jobs(services)
            print_report(args, fake, answered, jobs, acks, lag, memory, elapsed)


async def all_jobs(services: Services) -> list[Job]:
    async with services.db.session(read_only=True) as session:
        return list((await session.scalars(select(Job))).all())


def print_report(
    args: argparse.Namespace,
    fake: FakeDiscord,
    answered: list[MessageRecord],
    jobs: list[Job],
    acks: list[float],
    lag: LagMeter,
    memory: list[float],
    elapsed: float,
) -> None:
    posts = Counter(  # the revisions that put the job's images on its message
        sum(1 for revision in message.history if revision.components and revision.attachments)
        for message in answered
    )
    statuses = Counter(job.status for job in jobs)
    acks.sort()
    third = max(1, len(memory) // 3)
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        f"{args.members} members x ({args.prompts} /imagine + U1 + V1) on {args.workers} workers, "
        f"T = {args.seconds} s: {len(jobs)} jobs in {elapsed:.1f} s ({len(jobs) / elapsed:.1f} jobs/s; "
        f"ideal {args.workers / args.seconds:.1f})"
    )
    once = dict(posts) == {1: len(answered)} and statuses == {JobStatus.SUCCEEDED: len(jobs)}
    rows = {status.value: n for status, n in statuses.items()}
    print(f"delivered exactly once: {once} (messages by image posts: {dict(posts)}; job rows: {rows})")
    p50, p99, worst = (acks[int(len(acks) * q)] * 1000 for q in (0.5, 0.99, 0.999999))
    print(
        f"acknowledgements: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {worst:.0f} ms (target p99 <= 3 s); "
        f"Discord rules broken: {len(fake.state.violations)}"
    )
    stats = lag.stats()
    print(f"bot event-loop lag: p99 {stats.p99_ms:.1f} ms (target < 20 ms), max {stats.max_ms:.1f} ms")
    print(
        f"bot memory (RSS): first third {sum(memory[:third]) / third:.0f} MiB, last third "
        f"{sum(memory[-third:]) / third:.0f} MiB, peak {max(memory):.0f} MiB over {len(memory)} samples"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=0.2)
    parser.add_argument(
        "--think",
        type=float,
        nargs=2,
        default=(2.0, 6.0),
        metavar=("MIN", "MAX"),
        help="seconds a member waits before each command (uniform); the default: about 12 /imagine a second",
    )
    asyncio.run(run(parser.parse_args()))
