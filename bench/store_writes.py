"""Benchmark of the store under a bot's write pattern, and of the event loop while it runs.

Run from the repository root:  .venv/bin/python -m bench.store_writes [--url URL]

Each simulated job is what the bot does to the database: a quota read (usage since a day ago), the
job row, "running", then "succeeded" with five image rows and a usage row; each is its own unit of
work, with `--concurrency` jobs in flight at once. Prints:
- job lifecycles per second and the latency of one unit of work (p50 / p95 / max);
- the CPU time per unit of work on the event-loop thread and in the driver's threads (load-independent);
- the event loop's lag from a 1 ms ticker while idle, while writing, and while migrating a fresh
  database (on a busy machine the maximum mostly measures the OS scheduler; compare with idle).
Default database: a fresh SQLite file in a temporary folder (WAL, as the bot runs it).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from bench._lag import LagMeter
from bot.store import Database, JobKind, utcnow
from bot.store import queries as q
from bot.store.migrate import upgrade

T = TypeVar("T")
IMAGES = [
    q.ImageRecord(index=i, width=512, height=512, path=f"jobs/x/{i}.png", seed=i or None) for i in range(5)
]


async def timed(db: Database, work: Callable[[AsyncSession], Awaitable[T]], unit_ms: list[float]) -> T:
    """Run one unit of work in its own session and record how long it took."""
    began = time.perf_counter()
    async with db.session() as session:
        result = await work(session)
    unit_ms.append((time.perf_counter() - began) * 1000)
    return result


async def one_job(db: Database, n: int, unit_ms: list[float]) -> None:
    """The database side of one /imagine: quota read, create, running, succeeded."""
    user = n % 20
    since = utcnow() - timedelta(days=1)

    async def create(session: AsyncSession) -> str:
        job = await q.create_job(
            session,
            kind=JobKind.IMAGINE,
            user_id=user,
            guild_id=1,
            channel_id=2,
            prompt=f"a lighthouse at dusk, take {n} --ar 16:9",
            params={"ar": "16:9", "n": n},
            seed=n,
        )
        return job.id

    await timed(db, lambda s: q.usage_since(s, user, since, guild_id=1), unit_ms)
    job_id = await timed(db, create, unit_ms)
    await timed(db, lambda s: q.mark_running(s, job_id), unit_ms)
    seeds = [n, n + 1, n + 2, n + 3]
    await timed(
        db, lambda s: q.mark_succeeded(s, job_id, images=IMAGES, seeds=seeds, gpu_seconds=2.5), unit_ms
    )


@dataclass(frozen=True)
class WriteRun:
    jobs_per_s: float
    unit_ms: list[float]
    lag: LagMeter
    loop_cpu_s: float
    """CPU time of the event-loop thread (SQLAlchemy's Python side, plus the ticker)."""
    other_cpu_s: float
    """CPU time of every other thread: the SQLite driver threads doing the I/O."""


async def writes(db: Database, jobs: int, concurrency: int) -> WriteRun:
    unit_ms: list[float] = []
    next_job = iter(range(jobs))

    async def worker() -> None:
        for n in next_job:
            await one_job(db, n, unit_ms)

    with LagMeter() as lag:
        began, loop_cpu, all_cpu = time.perf_counter(), time.thread_time(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        loop_cpu, all_cpu = time.thread_time() - loop_cpu, time.process_time() - all_cpu
    return WriteRun(jobs / elapsed, unit_ms, lag, loop_cpu, all_cpu - loop_cpu)


async def main(url: str | None, jobs: int, concurrency: int, *, busy_handler: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        with LagMeter() as idle:
            await asyncio.sleep(1.0)
        with LagMeter() as migrating:
            report = await upgrade(url)
        db = await Database.connect(url)
        if busy_handler:
            db._turns = None  # the comparison: SQLite's busy handler alone queues the writers
        try:
            run = await writes(db, jobs, concurrency)
        finally:
            await db.close()
    cuts = statistics.quantiles(run.unit_ms, n=20)
    units = jobs * 4
    how = "SQLite busy handler only" if busy_handler else "writers queued in-process"
    print(f"python {platform.python_version()} on {platform.machine()}, {report.url} ({how})")
    print(
        f"{jobs} job lifecycles, {concurrency} in flight: {run.jobs_per_s:.1f} jobs/s ({units} units of work)"
    )
    print(f"unit of work latency: p50 {cuts[9]:.1f} ms, p95 {cuts[18]:.1f} ms, max {max(run.unit_ms):.1f} ms")
    print(
        f"CPU per unit of work: event-loop thread {run.loop_cpu_s / units * 1000:.2f} ms, "
        f"driver threads {run.other_cpu_s / units * 1000:.2f} ms"
    )
    print(f"event-loop lag idle:      {idle.summary()}")
    print(f"event-loop lag writing:   {run.lag.summary()}")
    print(f"event-loop lag migrating: {migrating.summary()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--compare", action="store_true", help="also run with SQLite's busy handler alone, for the ratio"
    )
    args = parser.parse_args()
    asyncio.run(main(args.url, args.jobs, args.concurrency))
    if args.compare:
        asyncio.run(main(args.url, args.jobs, args.concurrency, busy_handler=True))
