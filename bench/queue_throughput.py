"""Benchmark of the fair queue over simulated GPUs that only sleep T per job, leaving the CPU free.

Run from the repository root:  .venv/bin/python -m bench.queue_throughput
(`--real-size 512` or `1024`: the devices return four photo-like images of that side, and each job's
follower delivers them as the bot does, the WebP grid then the PNGs; use it with `--seconds 0.3`.)

Prints three figures against their targets:
- throughput over 200 jobs from 20 owners, as a fraction of the ideal workers / T (target >= 0.98);
- how long a newcomer's one job waits behind another owner's 20-job backlog, in job slots (<= 1);
- the largest event-loop lag while the queue runs, from a 1 ms ticker (< 20 ms).
Every job has a subscriber reading its events, as the bot would, so the fan-out is measured too.
Jobs are submitted one per loop step, as interactions arrive; the cost of a burst of submits in
one step is printed on its own. For scale on a noisy machine it also prints the same device run
without the queue and the lag of an idle loop, measured in the same rounds.
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
from collections.abc import Iterable
from pathlib import Path

from bench._lag import LagMeter
from bench._photos import PhotoBackend
from engine.backend import Backend
from engine.images import ImageFormat, prepare_job_images
from engine.queue import JobHandle, JobStarted, LocalQueue
from engine.simulated import SimulatedBackend
from engine.types import GenerationRequest

REAL_SIZE: int | None = None
"""`--real-size 512`: the devices return four photo-like images of that side, and each job's follower
encodes the grid to post (WebP) and writes the PNGs as the bot does (`engine.images`)."""


def backends(workers: int, seconds: float, steps: int) -> list[Backend]:
    if REAL_SIZE is not None:
        return [PhotoBackend(seconds, REAL_SIZE, steps=steps) for _ in range(workers)]
    return [SimulatedBackend(seconds=seconds, steps=steps, name=f"sim{i}") for i in range(workers)]


async def follow(handle: JobHandle) -> int:
    """Read every event of a job, as the bot's progress updater would; returns how many it saw.
    With `REAL_SIZE`, then deliver its images as the bot does: the grid to post, then the files."""
    events = sum([1 async for _ in handle.events()])
    if REAL_SIZE is not None:
        with tempfile.TemporaryDirectory() as folder:
            result = await handle.result()
            images = await prepare_job_images(
                result, handle.request, Path(folder), "job", image_format=ImageFormat.WEBP
            )
            await images.write()
    return events


async def device_alone(jobs: int, seconds: float, steps: int) -> dict[str, float]:
    """The baseline: the same simulated device running the jobs back to back with no queue.

    Its shortfall from the ideal is timer overshoot on this machine, not the queue's doing; the
    1 ms ticker meanwhile measures the lag of an idle loop, the noise floor.
    """
    (backend,) = backends(1, seconds, steps)

    def run_all() -> None:
        for i in range(jobs):
            backend.generate(
                GenerationRequest(prompt=f"job {i}", seed=i),
                on_progress=lambda _: None,
                cancelled=threading.Event(),
            )

    with LagMeter() as lag:
        await asyncio.sleep(0.05)
        began = time.perf_counter()
        await asyncio.to_thread(run_all)
        elapsed = time.perf_counter() - began
    lags = lag.stats()
    return {
        "elapsed_s": elapsed,
        "ratio": jobs * seconds / elapsed,
        "lag_max_ms": lags.max_ms,
        "lag_p99_ms": lags.p99_ms,
    }


async def throughput(jobs: int, owners: int, seconds: float, steps: int, workers: int) -> dict[str, float]:
    """`jobs` jobs from `owners` owners, all submitted at once, each followed by a subscriber."""
    per_owner = -(-jobs // owners)
    submit_s = 0.0
    async with LocalQueue(backends(workers, seconds, steps), max_waiting_per_owner=per_owner) as queue:
        with LagMeter() as lag:
            await asyncio.sleep(0.05)  # let the ticker settle before the work arrives
            began = time.perf_counter()
            handles: list[JobHandle] = []
            followers: list[asyncio.Task[int]] = []
            for i in range(jobs):
                request = GenerationRequest(prompt=f"job {i}", seed=i)
                started = time.perf_counter()
                handles.append(await queue.submit(f"owner{i % owners}", request))
                submit_s = max(submit_s, time.perf_counter() - started)
                followers.append(asyncio.create_task(follow(handles[-1])))
                # Each submit is its own interaction in the bot; a burst in one loop step
                # would measure this loop, not the queue (submit's own cost is printed).
                await asyncio.sleep(0)
            busy = sum([(await handle.result()).elapsed_s for handle in handles])
            elapsed = time.perf_counter() - began
            events = sum(await asyncio.gather(*followers))
        lags = lag.stats()
    return {
        "elapsed_s": elapsed,
        "ratio": jobs * seconds / workers / elapsed,
        "busy": busy / workers / elapsed,
        "events": events,
        "lag_max_ms": lags.max_ms,
        "lag_p99_ms": lags.p99_ms,
        "submit_max_ms": submit_s * 1000,
    }


async def newcomer(backlog: int, seconds: float, steps: int) -> dict[str, float]:
    """One owner queues `backlog` jobs; once the first runs, a newcomer submits one job."""
    backend = SimulatedBackend(seconds=seconds, steps=steps, name="sim0")  # fairness: no images needed
    async with LocalQueue([backend], max_waiting_per_owner=backlog) as queue:
        heavy = [
            await queue.submit("heavy", GenerationRequest(prompt=f"heavy {i}", seed=i))
            for i in range(backlog)
        ]
        async for event in heavy[0].events():
            if isinstance(event, JobStarted):
                break
        submitted = time.perf_counter()
        mine = await queue.submit("newcomer", GenerationRequest(prompt="mine"))
        position = queue.position(mine.job_id)
        async for event in mine.events():
            if isinstance(event, JobStarted):
                break
        waited = time.perf_counter() - submitted
        await mine.result()
        # Backlog jobs that started after the newcomer submitted and before it (the running one excluded).
        heavy_before = [call.prompt for call in backend.calls].index("mine") - 1
        for handle in heavy:
            await queue.cancel(handle.job_id)
    return {"waited_s": waited, "slots": waited / seconds, "position": position or 0, "jumped": heavy_before}


async def submit_burst(jobs: int, owners: int) -> float:
    """Seconds to submit `jobs` jobs in one loop step, the worst case for the caller's loop."""
    queue = LocalQueue(backends(1, 0.0, 1), max_waiting_per_owner=jobs)
    requests = [GenerationRequest(prompt=f"job {i}", seed=i) for i in range(jobs)]
    began = time.perf_counter()
    for i, request in enumerate(requests):
        await queue.submit(f"owner{i % owners}", request)
    elapsed = time.perf_counter() - began
    await queue.close()
    return elapsed


def listed(values: Iterable[float]) -> str:
    return ", ".join(f"{value:.4f}" for value in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--owners", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.05, help="simulated GPU time per job (T)")
    parser.add_argument("--steps", type=int, default=20, help="progress events per job")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4], help="simulated GPUs, one run each")
    parser.add_argument("--rounds", type=int, default=3, help="repeat everything; medians are reported")
    parser.add_argument(
        "--real-size", type=int, choices=(512, 1024), default=None, help="real images of this side, delivered"
    )
    args = parser.parse_args()
    global REAL_SIZE
    REAL_SIZE = args.real_size
    jobs, owners, seconds, steps = args.jobs, args.owners, args.seconds, args.steps

    print(
        f"python {platform.python_version()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}; "
        f"T = {seconds * 1000:.0f} ms, {steps} progress events a job, {args.rounds} rounds"
        + (f"; 4×{REAL_SIZE}² images a job, each delivered (WebP grid, PNGs)" if REAL_SIZE else "")
    )
    # Rounds interleave the baseline and the queue runs so they share the machine's noise.
    alone: list[dict[str, float]] = []
    queued: dict[int, list[dict[str, float]]] = {workers: [] for workers in args.workers}
    waits: list[dict[str, float]] = []
    bursts: list[float] = []
    for _ in range(args.rounds):
        alone.append(asyncio.run(device_alone(jobs, seconds, steps)))
        for workers in args.workers:
            queued[workers].append(asyncio.run(throughput(jobs, owners, seconds, steps, workers)))
        waits.append(asyncio.run(newcomer(20, seconds, steps)))
        bursts.append(asyncio.run(submit_burst(jobs, owners)))

    def median(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    def worst(runs: list[dict[str, float]], key: str) -> float:
        return max(run[key] for run in runs)

    ok = True
    print(
        f"device alone, {jobs} jobs back to back: {median(alone, 'ratio'):.4f} x 1/T "
        f"(rounds {listed(r['ratio'] for r in alone)}); "
        f"idle-loop lag max {worst(alone, 'lag_max_ms'):.2f} ms, p99 {median(alone, 'lag_p99_ms'):.2f} ms"
    )
    for workers, runs in queued.items():
        ratio = median(runs, "ratio")
        lag_max = worst(runs, "lag_max_ms")
        ok &= ratio >= 0.98 and lag_max < 20
        print(
            f"queue, {workers} worker(s), {jobs} jobs from {owners} owners: {ratio:.4f} x {workers}/T "
            f"(target >= 0.98; rounds {listed(r['ratio'] for r in runs)}); "
            f"{ratio / median(alone, 'ratio'):.4f} of the device alone; "
            f"device busy {median(runs, 'busy'):.2%}; {median(runs, 'events'):.0f} events read"
        )
        print(
            f"event-loop lag, {workers} worker(s): max {lag_max:.2f} ms (target < 20 ms; rounds "
            f"{listed(r['lag_max_ms'] for r in runs)}), p99 {median(runs, 'lag_p99_ms'):.2f} ms; "
            f"slowest submit {worst(runs, 'submit_max_ms'):.2f} ms"
        )
    jumped = worst(waits, "jumped")
    ok &= jumped == 0
    print(
        f"newcomer behind a 20-job backlog: position {waits[0]['position']:.0f}; backlog jobs started before "
        f"it {jumped:.0f}, so it waited only for the one running (target <= 1 slot); "
        f"waited {listed(w['slots'] for w in waits)} x T"
    )
    burst = statistics.median(bursts)
    print(
        f"{jobs} submits from {owners} owners in one loop step: {burst * 1000:.2f} ms "
        f"({burst / jobs * 1e6:.1f} us a submit; rounds {listed(b * 1000 for b in bursts)} ms)"
    )
    print("all targets met" if ok else "SOME TARGETS MISSED")


if __name__ == "__main__":
    main()
