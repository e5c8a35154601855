"""`imaginebot imagine "<prompt>" -o grid.png`: one local generation, no Discord.

The prompt goes through the same parser, queue and engine as the bot, and the files get the same
recipe. One request writes `grid.png` and its images `grid-1.png` … `grid-4.png` beside it. A
prompt that expands (`--repeat 3`, `{red, blue} fox`) writes one grid per request: `grid-1.png`
with `grid-1-1.png` … `grid-1-4.png`, then `grid-2.png`, and so on, in the order the parser gives.
"""

from __future__ import annotations

import asyncio
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bot.prompt import PromptError, PromptLimits, parse
from bot.requests import choose_seed, to_generation_request
from bot.settings import Settings
from engine.backend import Backend
from engine.backends import load_backend
from engine.errors import EngineError, ModelLoadError
from engine.images import SavedImages, save_job_images
from engine.queue import JobHandle, JobProgress, JobQueue, JobQueued, JobStarted, LocalQueue
from engine.types import GenerationRequest, GenerationResult, Progress

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "OutputError",
    "OutputPlan",
    "ProgressBar",
    "follow",
    "generation_requests",
    "imagine",
    "main",
    "plan_outputs",
    "quiet_libraries",
    "run_job",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

OWNER = "cli"
"""The queue owner for local runs: one person, so fairness between owners does not come into it."""

_BAR_WIDTH = 28


@dataclass(frozen=True, slots=True)
class OutputPlan:
    """Where one request's grid goes: `directory / f"{stem}.png"`, its images `{stem}-1.png` …."""

    directory: Path
    stem: str


class OutputError(ValueError):
    """The `-o` path cannot be used; the message says what to pass instead."""


def plan_outputs(output: Path, count: int) -> list[OutputPlan]:
    """One plan per request: `grid.png` alone, or `grid-1.png`, `grid-2.png`, … when there are several."""
    if output.suffix.lower() not in ("", ".png"):
        raise OutputError(
            f"imagine writes PNG files (the recipe lives in a PNG text chunk); "
            f"name the output like grid.png, not {output.name}."
        )
    directory, stem = output.parent, output.stem if output.suffix else output.name
    if count == 1:
        return [OutputPlan(directory, stem)]
    return [OutputPlan(directory, f"{stem}-{n}") for n in range(1, count + 1)]


def _make_folder(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder {str(directory)!r}: {exc.strerror or exc}.") from exc


class ProgressBar:
    """A one-line bar redrawn in place on a terminal stream: `[2/3] grid-2 [#####.....] 12/20`."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last = ""

    def show(self, text: str) -> None:
        if text == self._last:
            return
        # Pad over the previous line so a shorter one leaves no tail behind.
        self._stream.write("\r" + text.ljust(len(self._last)))
        self._stream.flush()
        self._last = text

    def progress(self, label: str, progress: Progress) -> None:
        filled = round(progress.fraction * _BAR_WIDTH)
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        self.show(f"{label} [{bar}] {progress.step}/{progress.total}")

    def done(self) -> None:
        if self._last:
            self._stream.write("\n")
            self._stream.flush()
            self._last = ""


class _Silent(ProgressBar):
    def show(self, text: str) -> None:
        pass

    def done(self) -> None:
        pass


def generation_requests(text: str, settings: Settings) -> list[GenerationRequest]:
    """Parse `text` with the bot's limits; a request without `--seed` gets a random one."""
    requests = parse(text, limits=PromptLimits.from_settings(settings))
    return [to_generation_request(request, seed=choose_seed(request)) for request in requests]


async def follow(handle: JobHandle, bar: ProgressBar, label: str) -> GenerationResult:
    """Draw one job's progress until it ends; return its result or raise its `EngineError`."""
    async for event in handle.events():
        if isinstance(event, JobQueued):
            bar.show(f"{label} waiting ({event.position} ahead)")
        elif isinstance(event, JobStarted):
            bar.show(f"{label} starting")
        elif isinstance(event, JobProgress):
            bar.progress(label, event.progress)
    return await handle.result()


async def run_job(
    queue: JobQueue, request: GenerationRequest, plan: OutputPlan, *, bar: ProgressBar | None = None
) -> SavedImages:
    """Submit one request, wait for it, and write its files: the path the CLI and the benchmark time."""
    handle = await queue.submit(OWNER, request)
    result = await (follow(handle, bar, plan.stem) if bar is not None else handle.result())
    return await save_job_images(result, request, plan.directory, plan.stem, attachment_limit_bytes=None)


async def imagine(
    settings: Settings,
    prompt: str,
    output: Path,
    *,
    quiet: bool = False,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Generate every request in `prompt` and write the files; returns the process exit code."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    # 1. Check everything the user typed before loading a model, which can take minutes.
    try:
        requests = generation_requests(prompt, settings)
        plans = plan_outputs(output, len(requests))
        await asyncio.to_thread(_make_folder, output.parent)
    except (PromptError, OutputError) as exc:
        print(f"imaginebot: {exc}", file=err)
        return EXIT_USAGE

    # 2. Load the model off the event loop.
    bar: ProgressBar = _Silent(err) if quiet else ProgressBar(err)
    bar.show(f"loading model {settings.model} …")
    quiet_libraries()
    try:
        backend = await asyncio.to_thread(
            load_backend,
            settings.model,
            device=settings.device,
            aliases=settings.model_aliases,
            diffusion_upscale=settings.diffusion_upscale,
        )
    except ModelLoadError as exc:
        bar.done()
        print(f"imaginebot: {exc}", file=err)
        return EXIT_FAILED

    # 3. Run the requests through the queue, one grid after another, and say where each went.
    try:
        return await _run_all(backend, requests, plans, bar=bar, out=out, err=err)
    finally:
        await asyncio.to_thread(backend.close)


async def _run_all(
    backend: Backend,
    requests: Sequence[GenerationRequest],
    plans: Sequence[OutputPlan],
    *,
    bar: ProgressBar,
    out: TextIO,
    err: TextIO,
) -> int:
    queue = LocalQueue([backend], max_running_per_owner=1, max_waiting_per_owner=len(requests))
    await queue.start()
    # Everything is queued at once, so the next grid generates while the last one is being written.
    handles = [await queue.submit(OWNER, request) for request in requests]
    saves: list[asyncio.Task[SavedImages] | None] = []
    failed = False
    try:
        for number, (handle, request, plan) in enumerate(zip(handles, requests, plans, strict=True), 1):
            label = f"[{number}/{len(requests)}] {plan.stem}" if len(requests) > 1 else plan.stem
            try:
                result = await follow(handle, bar, label)
            except EngineError as exc:
                bar.done()
                print(f"imaginebot: {plan.stem}: {exc}", file=err)
                saves.append(None)
                failed = True
                continue
            bar.done()
            saves.append(
                asyncio.create_task(
                    save_job_images(result, request, plan.directory, plan.stem, attachment_limit_bytes=None)
                )
            )
        for task, request, plan in zip(saves, requests, plans, strict=True):
            if task is None:
                continue
            try:
                _report(await task, request, out)
            except OSError as exc:
                print(f"imaginebot: could not write {plan.stem}.png: {exc.strerror or exc}.", file=err)
                failed = True
    except asyncio.CancelledError:
        for handle in handles:
            await handle.cancel()
        raise
    finally:
        await queue.close()
    return EXIT_FAILED if failed else EXIT_OK


def _report(saved: SavedImages, request: GenerationRequest, out: TextIO) -> None:
    seeds = request.seeds
    if saved.grid is not None:
        print(f"grid (seed {request.seed}): {saved.grid}", file=out)
    for number, (path, seed) in enumerate(zip(saved.images, seeds, strict=False), start=1):
        print(f"image {number} (seed {seed}): {path}", file=out)


def quiet_libraries() -> None:
    """Keep the terminal to our own bar and sentences: no library progress bars, advice or deprecations."""
    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


def main(settings: Settings, prompt: str, output: Path, *, quiet: bool = False) -> int:
    """Entry point for `imaginebot imagine`; returns the exit code (2 bad input, 1 failed, 130 Ctrl-C)."""
    try:
        return asyncio.run(imagine(settings, prompt, output, quiet=quiet))
    except KeyboardInterrupt:
        print("\nimaginebot: interrupted; files already written are complete.", file=sys.stderr)
        return EXIT_INTERRUPTED
