"""Benchmark of the remote queue: `imaginebot worker` processes on simulated GPUs, through a real Redis.

Run from the repository root (Redis 7 on 127.0.0.1:6379, or --url):
    .venv/bin/python -m bench.remote_queue [--workers 1,2,4,8] [--seconds 0.2] [--jobs-per-worker 100]

Each worker is a real subprocess whose GPU only waits T per job in 10 steps, with a preview image on
every progress event; the bot side is `RemoteQueue`, with every job's events read as the bot reads them.
Prints, against the issue's targets:
- throughput for N = 1, 2, 4, 8 workers, as a fraction of N/T (target >= 0.95);
- dispatch latency, a worker's result → its next job started (worker clock, p50/p99);
- progress event latency, a worker's event → the bot's subscriber (p99 < 50 ms);
- fairness with 4 workers: a newcomer behind another member's 40-job backlog waits at most one job slot;
- reclaim: a worker killed (SIGKILL) mid-job → its job running again, within lease + 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import time
from collections import defaultdict

import redis.asyncio as aioredis

from bench._workers import WorkerPool
from engine.queue import JobHandle, JobProgress, JobRetried, JobStarted, RemoteQueue
from engine.types import GenerationRequest


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def ms(values: list[float], q: float) -> str:
    return f"{quantile(values, q) * 1000:.1f} ms"


def make_queue(pool: WorkerPool, *, max_running: int = 4) -> RemoteQueue:
    return RemoteQueue(
        pool.url,
        model_of=lambda _request: pool.model,
        prefix=pool.prefix,
        lease_s=pool.lease_s,
        max_running_per_owner=max_running,
        max_waiting_per_owner=10_000,
    )


async def follow(handle: JobHandle, received: dict[tuple[str, int], float]) -> None:
    """Read every event as the bot does; note when each progress step arrived (wall clock)."""
    async for event in handle.events():
        if isinstance(event, JobProgress):
            received[(handle.job_id, event.progress.step)] = time.time()


async def throughput(url: str, workers: int, seconds: float, jobs: int) -> None:
    model = f"simulated:seconds={seconds},steps=10,previews=true"
    async with WorkerPool(url, model, workers) as pool:
        queue = make_queue(pool, max_running=workers)
        await queue.start()
        received: dict[tuple[str, int], float] = {}
        began, cpu = time.perf_counter(), time.process_time()
        handles = [
            await queue.submit(f"owner{n % 20}", GenerationRequest(prompt=f"job {n}", seed=n))
            for n in range(jobs)
        ]
        followers = [asyncio.create_task(follow(handle, received)) for handle in handles]
        for handle in handles:
            await handle.result()
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
        await asyncio.gather(*followers)
        dispatch, progress = await latencies(pool, received)
        for handle in handles:
            await handle.release()
        await queue.close(grace_s=0)
    ideal = jobs * seconds / workers
    print(
        f"N={workers}: {jobs} jobs in {elapsed:.2f} s = {ideal / elapsed:.4f} x N/T (target >= 0.95); "
        f"dispatch p50 {ms(dispatch, 0.5)}, p99 {ms(dispatch, 0.99)}; "
        f"progress p50 {ms(progress, 0.5)}, p99 {ms(progress, 0.99)} (target < 50 ms) of {len(progress)}; "
        f"bot side {cpu / elapsed:.0%} of a core"
    )


async def latencies(
    pool: WorkerPool, received: dict[tuple[str, int], float]
) -> tuple[list[float], list[float]]:
    """From the worker-stamped events and results still in Redis: dispatch and progress latencies."""
    client = aioredis.Redis.from_url(pool.url)
    try:
        events = await client.xrange(f"{pool.prefix}:events")
        results = await client.xrange(f"{pool.prefix}:results")
    finally:
        await client.aclose()
    ended: dict[str, list[float]] = defaultdict(list)
    for _id, fields in results:
        ended[fields[b"worker"].decode()].append(float(fields[b"at"]))
    started: dict[str, list[float]] = defaultdict(list)
    progress = []
    for _id, fields in events:
        kind = fields.get(b"type", b"").decode()
        if kind == "started":
            started[fields[b"worker"].decode()].append(float(fields[b"at"]))
        elif kind == "progress":
            key = (fields[b"job"].decode(), int(fields[b"step"]))
            if key in received:
                progress.append(received[key] - float(fields[b"at"]))
    dispatch, runs = [], []
    for worker, ends in ended.items():
        starts = sorted(started[worker])
        for end in sorted(ends):
            later = [start for start in starts if start > end]
            if later:
                dispatch.append(later[0] - end)
            earlier = [start for start in starts if start < end]
            if earlier:
                runs.append(end - earlier[-1])
    print(f"  a run on the worker, started → result: mean {statistics.fmean(runs) * 1000:.1f} ms")
    return dispatch, progress


async def fairness(url: str, seconds: float) -> None:
    model = f"simulated:seconds={seconds},steps=10"
    async with WorkerPool(url, model, 4) as pool:
        queue = make_queue(pool, max_running=4)
        await queue.start()
        starts: dict[str, float] = {}

        async def note_start(handle: JobHandle) -> None:
            async for event in handle.events():
                if isinstance(event, JobStarted):
                    starts[handle.job_id] = time.perf_counter()

        backlog = [await queue.submit("hog", GenerationRequest(prompt=f"h{n}")) for n in range(40)]
        watchers = [asyncio.create_task(note_start(handle)) for handle in backlog]
        await backlog[8].result()  # the backlog has been running a while
        submitted = time.perf_counter()
        newcomer = await queue.submit("newcomer", GenerationRequest(prompt="me"))
        watchers.append(asyncio.create_task(note_start(newcomer)))
        await newcomer.result()
        for handle in backlog:
            await handle.result()
        await asyncio.gather(*watchers)
        for handle in [*backlog, newcomer]:
            await handle.release()
        await queue.close(grace_s=0)
    waited = starts[newcomer.job_id] - submitted
    before = sum(1 for job, at in starts.items() if submitted < at < starts[newcomer.job_id])
    print(
        f"fairness, 4 workers: the newcomer waited {waited / seconds:.2f} job slots (target <= 1); "
        f"{before} backlog jobs started before it"
    )


async def reclaim(url: str, seconds: float, lease_s: float) -> None:
    model = f"simulated:seconds={seconds * 20},steps=40"  # long enough to kill in the middle
    async with WorkerPool(url, model, 1, lease_s=lease_s) as pool:
        queue = make_queue(pool)
        await queue.start()
        handle = await queue.submit("alice", GenerationRequest(prompt="survivor"))
        events = handle.events()
        async for event in events:
            if isinstance(event, JobStarted):
                break
        await pool.start("spare")
        killed = time.perf_counter()
        pool.procs["gpu0"].send_signal(signal.SIGKILL)
        retried_at = None
        async for event in events:
            if isinstance(event, JobRetried):
                retried_at = time.perf_counter()
            if isinstance(event, JobStarted):
                break
        again = time.perf_counter() - killed
        await handle.result()
        await handle.release()
        await queue.close(grace_s=0)
    noticed = (retried_at or float("nan")) - killed
    print(
        f"reclaim: worker killed mid-job, its job noticed lost after {noticed:.2f} s and running again on "
        f"another after {again:.2f} s (lease {lease_s:g} s; target <= lease + 1 s)"
    )


async def main(args: argparse.Namespace) -> None:
    machine = f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"machine: {machine}; T = {args.seconds} s")
    for workers in (int(n) for n in args.workers.split(",")):
        await throughput(args.url, workers, args.seconds, args.jobs_per_worker * workers)
    await fairness(args.url, args.seconds)
    await reclaim(args.url, args.seconds, args.lease)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=0.2, help="T, the simulated GPU time of a job")
    parser.add_argument("--jobs-per-worker", type=int, default=100)
    parser.add_argument("--lease", type=float, default=3.0, help="IMAGINE_LEASE_S for the reclaim figure")
    asyncio.run(main(parser.parse_args()))
