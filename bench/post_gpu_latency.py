"""Benchmark: what a member waits after the GPU is done, at real image sizes.

A simulated device takes T (default 300 ms) a job, as a Turbo model on a current GPU does, and returns
four real-looking images (smooth shading plus grain, like decoded diffusion output) of 512² — or 1024²
with `--cell 1024`, for SDXL-sized grids. Each job goes the whole way: `/imagine` through the loopback
fake Discord, the job service, the queue, the device, then the bot's delivery to the grid message. The
fake answers an upload no sooner than its bytes could cross a home uplink (`--uplink-mbps`, default 20).

Per job, in order (monotonic clock, one process):
- backend done: the device returned the images;
- ready to post: the presenter was handed the file to post;
- upload started: the fake received the request that carries the grid;
- grid visible: the fake applied it (the message has its grid and buttons);
- files on disk: the job's follower finished (every file written, the job row succeeded).
Jobs run one at a time for those figures (`--rounds`, after one warm-up), then `--burst` jobs from three
members at once for throughput: the device's start-to-start rate against 1/T (target ≥ 0.98), and the
latencies under that load. Previews are measured too: what one preview edit uploads, and what encoding
it costs. The last line is `added latency p50 <ms> ms, p95 <ms> ms; grid attachment <KiB> KiB` (backend
done → grid visible, over the sequential rounds).

    PYTHONPATH=. .venv/bin/python bench/post_gpu_latency.py [--rounds 10] [--seconds 0.3] [--cell 512]
        [--uplink-mbps 20] [--burst 24] [--format webp|jpeg|png]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._photos import PhotoBackend
from bot import render
from bot.client import ImagineBot
from bot.config import Config
from bot.services import Services, open_services
from fakediscord import FakeConfig, FakeDiscord, MessageRecord, run_bot
from fakediscord.payloads import FakeMember
from fakediscord.state import RequestRecord

STAGES = ("ready to post", "upload started", "grid visible", "files on disk")


@dataclass
class Round:
    """One job's moments (monotonic seconds) and what its grid upload carried."""

    done: float
    ready: float
    upload: float
    visible: float
    written: float
    grid_bytes: int
    filename: str

    def stages_ms(self) -> dict[str, float]:
        moments = (self.ready, self.upload, self.visible, self.written)
        return {stage: (at - self.done) * 1000 for stage, at in zip(STAGES, moments, strict=True)}


@dataclass
class Recorder:
    """When the presenter was handed each job's result, by job id."""

    ready: dict[str, float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)

    def watch(self, services: Services) -> None:
        presenter: Any = services.jobs.presenter
        show_result: Callable[..., Awaitable[int | None]] = presenter.show_result

        async def timed(card: Any, saved: Any) -> int | None:
            self.ready[card.job_id] = time.monotonic()
            return await show_result(card, saved)

        presenter.show_result = timed


def _grid_revision(message: MessageRecord) -> float:
    return next(revision.at for revision in message.history if len(revision.components) == 2)


def _grid_upload(fake: FakeDiscord, job_id: str, after: float) -> RequestRecord:
    """The request that carried the grid: the first after the device finished whose file is named for
    the job (progress edits carry `preview.*`)."""

    def names(record: RequestRecord) -> list[str]:
        attachments = record.body.get("attachments", []) if isinstance(record.body, dict) else []
        return [str(a.get("filename", "")).removeprefix("SPOILER_") for a in attachments]

    return next(
        r
        for r in fake.state.requests
        if r.received_at is not None
        and r.received_at >= after
        and any(name.startswith(job_id) for name in names(r))
    )


async def one_job(
    fake: FakeDiscord,
    services: Services,
    backend: PhotoBackend,
    recorder: Recorder,
    seed: int,
    user: FakeMember,
) -> Round:
    interaction = await fake.slash("imagine", {"prompt": f"a lighthouse at dusk --seed {seed}"}, user=user)
    message = await interaction.wait_original(timeout=30)
    await fake.wait_for(lambda _: len(message.custom_ids()) == 9, timeout=120, what=f"grid {seed}")
    job_id = message.custom_ids()[0].split(":")[2]
    follower = services.jobs._following.get(job_id)  # it ends once every file is written
    if follower is not None:
        await asyncio.wait([follower])
    written = time.monotonic()
    done = backend.done[seed]
    upload = _grid_upload(fake, job_id, done)
    assert upload.received_at is not None
    attachment = message.attachments[0]
    return Round(
        done=done,
        ready=recorder.ready[job_id],
        upload=upload.received_at,
        visible=_grid_revision(message),
        written=written,
        grid_bytes=upload.body_bytes,
        filename=attachment.filename,
    )


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(label: str, rounds: list[Round], uplink_bytes_per_s: float) -> None:
    print(f"{label} ({len(rounds)} jobs), ms after backend done, p50 / p95:")
    for stage in STAGES:
        values = [r.stages_ms()[stage] for r in rounds]
        print(f"  {stage:>15}: {statistics.median(values):7.1f} / {_p(values, 0.95):7.1f}")
    sizes = [r.grid_bytes for r in rounds]
    upload_ms = statistics.median(sizes) / uplink_bytes_per_s * 1000
    print(
        f"  bytes uploaded for the grid: {statistics.median(sizes) / 1024:.1f} KiB ({rounds[0].filename}), "
        f"{upload_ms:.1f} ms at the uplink rate"
    )


def preview_cost(backend: PhotoBackend, fake: FakeDiscord, until: float) -> str:
    times = []
    for _ in range(5):
        began = time.perf_counter()
        file = render.preview_file(backend.preview)
        times.append((time.perf_counter() - began) * 1000)
        size = len(file.fp.read())
    uploads = [r.body_bytes for r in fake.state.requests if r.at <= until and "preview." in str(r.body)]
    sent = statistics.median(uploads) / 1024 if uploads else 0.0
    return (
        f"preview: {backend.preview.width}x{backend.preview.height}, {size / 1024:.1f} KiB, encoded on the "
        f"event loop in {statistics.median(times):.1f} ms; {len(uploads)} preview edits uploaded, "
        f"{sent:.1f} KiB each"
    )


async def run(args: argparse.Namespace) -> None:
    backend = PhotoBackend(args.seconds, args.cell, steps=args.steps)
    rate = args.uplink_mbps * 1_000_000 / 8
    extra: dict[str, Any] = {} if args.format is None else {"discord_image_format": args.format}
    with tempfile.TemporaryDirectory() as data:
        config = Config(
            _env_file=None,
            data_dir=Path(data),
            model="photo-sim",
            progress_interval_s=0.5,
            max_waiting_per_owner=args.burst,
            **extra,
        )
        async with (
            FakeDiscord(FakeConfig(heartbeat_interval_ms=1000, uplink_bytes_per_s=rate)) as fake,
            open_services(config, backend=backend) as services,
            run_bot(ImagineBot(services), fake),
        ):
            recorder = Recorder()
            recorder.watch(services)
            await one_job(fake, services, backend, recorder, 10_000, fake.member)  # warm-up
            sequential = []
            for i in range(args.rounds):
                sequential.append(
                    await one_job(fake, services, backend, recorder, 100 * (i + 1), fake.member)
                )
            sequential_end = time.monotonic()
            users = [fake.member, fake.other_member, fake.admin]
            first_start = len(backend.starts)
            burst = await asyncio.gather(
                *(
                    one_job(fake, services, backend, recorder, 100_000 + 100 * i, users[i % 3])
                    for i in range(args.burst)
                )
            )
            starts = backend.starts[first_start:]
            preview = preview_cost(backend, fake, sequential_end)
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(
        f"T = {args.seconds * 1000:.0f} ms, 4×{args.cell}² per job, uplink {args.uplink_mbps:g} Mbps, "
        f"format {args.format or 'default'}"
    )
    report("one at a time", sequential, rate)
    if len(starts) > 1:
        throughput = (len(starts) - 1) / (starts[-1] - starts[0]) * args.seconds
        report(f"{args.burst} at once", burst, rate)
        print(f"  device throughput during the burst: {throughput:.3f} × 1/T (target ≥ 0.98)")
    print(preview)
    added = [r.stages_ms()["grid visible"] for r in sequential]
    kib = statistics.median(r.grid_bytes for r in sequential) / 1024
    print(
        f"added latency p50 {statistics.median(added):.0f} ms, p95 {_p(added, 0.95):.0f} ms; "
        f"grid attachment {kib:.0f} KiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=0.3, help="device time per job, T")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--cell", type=int, default=512, choices=(512, 1024), help="image side")
    parser.add_argument("--uplink-mbps", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=24, help="jobs at once for throughput (0: none)")
    parser.add_argument("--format", choices=("webp", "jpeg", "png"), default=None)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
