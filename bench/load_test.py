"""Load test: many members at once, through the loopback fake Discord, on remote workers.

Run from the repository root (Redis 7 on 127.0.0.1:6379, or --url):
    .venv/bin/python -m bench.load_test [--members 50] [--prompts 10] [--workers 4] [--seconds 0.2]

The bot is the real `imaginebot run` in its own process (with `IMAGINE_QUEUE_URL`), pointed at the fake
Discord this process serves; `--workers` `imaginebot worker` subprocesses run the jobs on a simulated
GPU of T seconds. Every member types `--prompts` /imagine, each after a think time (`--think`, 2–6 s:
with 50 members about 12 a second, 60 % of what 4 workers at 0.2 s can run), then presses U1 and V1 on
their first grid. Prints, against the issue's targets: every job delivered exactly once (one image post
per job's message, every row succeeded), interaction acknowledgements p99 within 3 s, no Discord rule
broken, the bot's event-loop lag (from its own `health:` log lines, every 2 s) with p99 < 20 ms beside the
lag of an idle loop in its own process (bench/_idle_loop.py: what the machine alone costs a loop), and the
bot process's memory (RSS) by quarter of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import re
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from bench._workers import ROOT, WorkerPool
from bot.store.db import Database
from bot.store.models import UNFINISHED, Job, JobStatus
from fakediscord import FakeConfig, FakeDiscord, InteractionRecord, MessageRecord
from fakediscord.payloads import FakeMember, FakeUser, new_snowflake

HEALTH = re.compile(
    r"health: event loop late p99 ([\d.]+) ms, max ([\d.]+) ms \((\d+) of (\d+) ticks over 20 ms\)"
)


async def start_bot(
    fake: FakeDiscord, pool: WorkerPool, data: Path, args: argparse.Namespace
) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "fakediscord/sitecustomize"), str(ROOT)]),
        "FAKE_DISCORD_URL": fake.url,
        "DISCORD_TOKEN": "fake-bot-token",
        "IMAGINE_DATA_DIR": str(data),
        "IMAGINE_MODEL": pool.model,
        "IMAGINE_QUEUE_URL": pool.url,
        "IMAGINE_QUEUE_PREFIX": pool.prefix,
        "IMAGINE_LEASE_S": str(pool.lease_s),
        "IMAGINE_MAX_WAITING_PER_OWNER": str(args.prompts + 2),
        "IMAGINE_HEALTH_INTERVAL_S": "2",
        "IMAGINE_LOG_LEVEL": "INFO",
    }
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    with (data / "bot.log").open("ab") as log:
        bot = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", env=env, cwd=data, stderr=log
        )
    await fake.wait_until_synced(count=1, timeout=120)
    return bot


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def sample_memory(pid: int, samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError):
            samples.append(rss_mib(pid))
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


async def ended_jobs(db: Database) -> list[Job]:
    async with db.session(read_only=True) as session:
        return list((await session.scalars(select(Job).where(Job.status.not_in(UNFINISHED)))).all())


async def finished(db: Database, expected: int) -> None:
    """Wait until `expected` jobs have ended, asking the bot's database (read-only) twice a second."""
    while True:
        async with db.session(read_only=True) as session:
            done = await session.scalar(
                select(func.count()).select_from(Job).where(Job.status.not_in(UNFINISHED))
            )
        if done is not None and done >= expected:
            return
        await asyncio.sleep(0.5)


async def run(args: argparse.Namespace) -> None:
    model = f"simulated:seconds={args.seconds},steps=10,previews=true"
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        async with (
            WorkerPool(args.url, model, args.workers, lease_s=10) as pool,
            FakeDiscord(FakeConfig()) as fake,
        ):
            bot = await start_bot(fake, pool, data, args)
            with (data / "idle.log").open("ab") as idle_log:  # the machine's own lag, for reference
                idle = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench._idle_loop", cwd=ROOT, stderr=idle_log
                )
            members = [
                FakeMember(user=FakeUser(id=new_snowflake(), name=f"m{n}")) for n in range(args.members)
            ]
            memory: list[float] = []
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_memory(bot.pid, memory, stop))
            db = await Database.connect(args.database_url or f"sqlite+aiosqlite:///{data / 'imaginebot.db'}")
            try:
                began = time.perf_counter()
                sessions = [member_session(fake, m, args, rng) for m in members]
                interactions = [i for sent in await asyncio.gather(*sessions) for i in sent]
                await asyncio.wait_for(finished(db, len(interactions)), timeout=1800)
                elapsed = time.perf_counter() - began
                jobs = await ended_jobs(db)
            finally:
                stop.set()
                await sampler
                await db.close()
                for process in (bot, idle):
                    process.send_signal(signal.SIGTERM)
                for process in (bot, idle):
                    await asyncio.wait_for(process.wait(), 60)
            answered = [await i.wait_original(timeout=60) for i in interactions]
            acks = sorted(i.ack_latency or float("inf") for i in interactions)
            log = (data / "bot.log").read_text()
            idle_log_text = (data / "idle.log").read_text()
        print_report(args, fake, answered, jobs, acks, log, idle_log_text, memory, elapsed)


def print_report(
    args: argparse.Namespace,
    fake: FakeDiscord,
    answered: list[MessageRecord],
    jobs: list[Job],
    acks: list[float],
    log: str,
    idle_log: str,
    memory: list[float],
    elapsed: float,
) -> None:
    posts = Counter(  # the revisions that put the job's images on its message
        sum(1 for revision in message.history if revision.components and revision.attachments)
        for message in answered
    )
    statuses = Counter(job.status for job in jobs)
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        f"{args.members} members x ({args.prompts} /imagine + U1 + V1) on {args.workers} workers, "
        f"T = {args.seconds} s: {len(jobs)} jobs in {elapsed:.1f} s ({len(jobs) / elapsed:.1f} jobs/s; "
        f"the workers could run {args.workers / args.seconds:.1f})"
    )
    once = dict(posts) == {1: len(answered)} and statuses == {JobStatus.SUCCEEDED: len(jobs)}
    rows = {status.value: n for status, n in statuses.items()}
    print(f"delivered exactly once: {once} (messages by image posts: {dict(posts)}; job rows: {rows})")
    p50, p99, worst = (acks[min(len(acks) - 1, int(len(acks) * q))] * 1000 for q in (0.5, 0.99, 1.0))
    print(
        f"acknowledgements: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {worst:.0f} ms (target p99 <= 3 s); "
        f"Discord rules broken: {len(fake.state.violations)}"
    )
    share = print_lag("bot event-loop lag", log)
    print(f"  so p99 < 20 ms: {share < 0.01}")
    print_lag("for reference, an idle event loop in its own process on the same machine", idle_log)
    quarter = max(1, len(memory) // 4)
    quarters = " → ".join(
        f"{statistics.fmean(memory[n * quarter : (n + 1) * quarter]):.0f}" for n in range(4)
    )
    print(
        f"bot process memory (RSS), mean of each quarter of the run: {quarters} MiB ({len(memory)} samples)"
    )


def print_lag(what: str, log: str) -> float:
    """Print the lag that a log's `health:` lines add up to; return the share of ticks over 20 ms."""
    health = [tuple(map(float, m.groups())) for m in HEALTH.finditer(log)]
    late = sum(h[2] for h in health)
    ticks = sum(h[3] for h in health)
    share = late / max(ticks, 1)
    print(
        f"{what} ({len(health)} health lines of 2 s, {ticks:.0f} ticks of 50 ms): "
        f"{late:.0f} ticks ({share:.2%}) over 20 ms; "
        f"worst 2-s p99 {max((h[0] for h in health), default=float('nan')):.1f} ms, "
        f"max {max((h[1] for h in health), default=float('nan')):.1f} ms"
    )
    if late:
        print(f"  lines with late ticks (from 1): {[n for n, h in enumerate(health, 1) if h[2]]}")
    return share


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
