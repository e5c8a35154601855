"""Benchmark: writing PNGs does not stall generation.

A simulated backend takes T = 50 ms a job and returns four real 512×512 images. One consumer per
job waits for its result and saves it (grid + 4 images, each with its recipe) while the queue runs
the next job. The figure is the queue's generation rate, measured from the backend's own start
times, against 1/T; it should stay ≥ 0.95 × 1/T. Also printed: the worst lateness of the event
loop (what a Discord heartbeat or button click would wait), and, for contrast, the same run
encoding on the event loop, which is what `save_job_images` avoids.

    PYTHONPATH=. .venv/bin/python bench/encode_stall.py [--jobs 40] [--period-ms 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from PIL import Image

from bench._photos import photo_like
from engine.backend import ProgressCallback
from engine.errors import JobCancelled
from engine.images import encode_png, make_grid, recipe_text, save_job_images
from engine.queue import LocalQueue
from engine.types import GenerationRequest, GenerationResult, Progress

SIZE = 512
Saver = Callable[[GenerationResult, GenerationRequest, Path, str], Awaitable[object]]


class SleepBackend:
    """A backend whose device time is a sleep of `period` seconds (the thread holds no GIL meanwhile)."""

    name = "sleep"
    edits = False
    checker = None

    def __init__(self, period: float, images: tuple[Image.Image, ...]) -> None:
        self.period = period
        self.images = images
        self.starts: list[float] = []

    def generate(
        self, request: GenerationRequest, *, on_progress: ProgressCallback, cancelled: threading.Event
    ) -> GenerationResult:
        self.starts.append(time.perf_counter())
        if cancelled.wait(self.period):
            raise JobCancelled("cancelled")
        on_progress(Progress(step=1, total=1))
        return GenerationResult(
            images=self.images,
            seeds=request.seeds,
            width=SIZE,
            height=SIZE,
            steps=20,
            cfg=7.0,
            sampler="euler_a",
            model="simulated",
        )

    def close(self) -> None:
        pass


async def save_off_loop(
    result: GenerationResult, request: GenerationRequest, directory: Path, stem: str
) -> object:
    return await save_job_images(result, request, directory, stem)


async def save_on_loop(
    result: GenerationResult, request: GenerationRequest, directory: Path, stem: str
) -> object:
    # The mistake this benchmark guards against: CPU-bound encoding inside the event loop.
    (directory / f"{stem}.png").write_bytes(
        encode_png(make_grid(result.images), recipe_text(request, result))
    )
    for index, image in enumerate(result.images):
        (directory / f"{stem}-{index + 1}.png").write_bytes(
            encode_png(image, recipe_text(request, result, index))
        )
    return None


async def no_save(result: GenerationResult, request: GenerationRequest, directory: Path, stem: str) -> object:
    return None


class LoopLag:
    """Measures how late the event loop wakes a 5 ms sleeper: what a Discord heartbeat would feel."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            began = time.perf_counter()
            await asyncio.sleep(0.005)
            self.worst = max(self.worst, time.perf_counter() - began - 0.005)

    def start(self) -> None:
        self._task = asyncio.create_task(self._tick())

    def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()


async def run(
    jobs: int, period: float, images: tuple[Image.Image, ...], saver: Saver
) -> tuple[float, float, float]:
    """Returns (generation rate in jobs/s, seconds until every file is written, worst loop lag in s)."""
    backend = SleepBackend(period, images)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)

        async def consume(
            handle_result: Awaitable[GenerationResult], request: GenerationRequest, n: int
        ) -> None:
            await saver(await handle_result, request, directory, f"job{n}")

        queue = LocalQueue([backend], max_running_per_owner=1, max_waiting_per_owner=jobs)
        async with queue:
            lag = LoopLag()
            lag.start()
            began = time.perf_counter()
            consumers = []
            for n in range(jobs):
                request = GenerationRequest(prompt=f"a red fox in snow {n}", seed=n)
                handle = await queue.submit("bench", request)
                consumers.append(asyncio.create_task(consume(handle.result(), request, n)))
            await asyncio.gather(*consumers)
            total = time.perf_counter() - began
            lag.stop()
    starts = backend.starts
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    return rate, total, lag.worst


async def main_async(jobs: int, period: float, repeats: int) -> None:
    images = tuple(photo_like(seed, SIZE) for seed in range(4))
    grid_bytes = len(encode_png(make_grid(images), "x"))
    t0 = time.perf_counter()
    for image in images:
        encode_png(image, "x")
    encode_png(make_grid(images), "x")
    encode_s = time.perf_counter() - t0
    print(f"jobs={jobs} T={period * 1000:.0f} ms, 4×{SIZE}² images, grid PNG {grid_bytes / 1e6:.2f} MB")
    print(f"encoding one job's 5 PNGs serially: {encode_s * 1000:.0f} ms ({encode_s / period:.1f}×T)")
    target = 1 / period
    for label, saver in (
        ("no saving", no_save),
        ("save off loop", save_off_loop),
        ("encode on loop", save_on_loop),
    ):
        rates, totals, lags = [], [], []
        for _ in range(repeats):
            rate, total, lag = await run(jobs, period, images, saver)
            rates.append(rate)
            totals.append(total)
            lags.append(lag)
        rate = statistics.median(rates)
        print(
            f"{label:>15}: generation {rate:6.2f} jobs/s = {rate / target:.3f} × 1/T;"
            f" worst event-loop lag {max(lags) * 1000:6.1f} ms;"
            f" all files written after {statistics.median(totals):.2f} s (median of {repeats})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--period-ms", type=float, default=50.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main_async(args.jobs, args.period_ms / 1000, args.repeats))


if __name__ == "__main__":
    main()
