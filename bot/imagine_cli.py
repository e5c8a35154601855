"""`imaginebot imagine "<prompt>" -o grid.png`: one local generation, no Discord.

The prompt goes through the same services as the bot (`bot.services`): the job service checks,
stores and queues it as the operator's job, the queue runs it, and a terminal presenter draws the
progress and links the finished files to where `-o` says. One request writes `grid.png` and its
images `grid-1.png` … `grid-4.png` beside it. A prompt that expands (`--repeat 3`, `{red, blue} fox`)
writes one grid per request: `grid-1.png` with `grid-1-1.png` … `grid-1-4.png`, then `grid-2.png`,
and so on, in the order the parser gives. The job's own copies stay in the data dir, as history.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from bot.config import Config
from bot.jobs import OPERATOR, JobCard, JobService, JobTicket
from bot.policy import PolicyError
from bot.prompt import PromptError, PromptLimits, parse
from bot.services import open_services
from bot.store.errors import StoreError
from engine.errors import CredentialsRejected, EngineError
from engine.images import SavedImages
from engine.types import Progress

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "OutputError",
    "OutputPlan",
    "ProgressBar",
    "TerminalPresenter",
    "imagine",
    "main",
    "plan_outputs",
    "quiet_libraries",
    "run_prompt",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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
    """tqdm's bar on a terminal stream, one per job (`grid-2:  60%|██████    | 12/20 [00:03<00:02]`),
    and one-line statuses (`loading model tiny …`, `grid waiting`) that the next line replaces."""

    def __init__(self, stream: TextIO, *, quiet: bool = False) -> None:
        self._stream = stream
        self._quiet = quiet
        self._bar: tqdm[Any] | None = None
        self._showing: tuple[str, int | None] | None = None

    def _open(self, text: str, total: int | None) -> tqdm[Any]:
        self.done()
        status = total is None
        bar: tqdm[Any] = tqdm(
            total=total,
            desc=text,
            file=self._stream,
            unit="step",
            leave=not status,  # a status line is cleared by whatever comes next; a finished bar stays
            bar_format="{desc}" if status else None,
            dynamic_ncols=True,
        )
        self._bar, self._showing = bar, (text, total)
        return bar

    def show(self, text: str) -> None:
        """A status line with no steps, in place of whatever is showing."""
        if not self._quiet and self._showing != (text, None):
            self._open(text, None)

    def progress(self, label: str, progress: Progress) -> None:
        if self._quiet:
            return
        bar = self._bar
        if bar is None or self._showing != (label, progress.total):
            bar = self._open(label, progress.total)
        bar.update(progress.step - bar.n)

    def done(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._showing = None


@dataclass(frozen=True, slots=True)
class _Output:
    plan: OutputPlan
    label: str
    seeds: tuple[int, ...]


class TerminalPresenter:
    """Shows the operator's jobs on a terminal and puts their files where `-o` says."""

    progress_interval_s = 0.0

    def __init__(self, bar: ProgressBar, out: TextIO, err: TextIO) -> None:
        self.bar = bar
        self.out = out
        self.err = err
        self.failed = False
        self._outputs: dict[str, _Output] = {}

    def expect(self, ticket: JobTicket, plan: OutputPlan, label: str) -> None:
        """Show `ticket`'s job under `label` and write its files by `plan`."""
        self._outputs[ticket.card.job_id] = _Output(plan, label, ticket.handle.request.seeds)

    async def show_waiting(self, card: JobCard) -> int | None:
        self.bar.show(f"{self._outputs[card.job_id].label} waiting")
        return None

    async def show_progress(self, card: JobCard, progress: Progress) -> None:
        self.bar.progress(self._outputs[card.job_id].label, progress)

    async def show_result(self, card: JobCard, saved: SavedImages) -> int | None:
        self.bar.done()
        output = self._outputs[card.job_id]
        try:
            if saved.written is not None:  # the job's files are being written as it is shown
                await saved.written
            written = await asyncio.to_thread(_place, saved, output.plan)
        except OSError as exc:
            print(
                f"imaginebot: could not write {output.plan.stem}.png: {exc.strerror or exc}.", file=self.err
            )
            self.failed = True
            return None
        grid, images = written
        if grid is not None:
            print(f"grid (seed {output.seeds[0]}): {grid}", file=self.out)
        for number, (path, seed) in enumerate(zip(images, output.seeds, strict=False), start=1):
            print(f"image {number} (seed {seed}): {path}", file=self.out)
        return None

    async def show_failure(self, card: JobCard, reason: str) -> None:
        self.bar.done()
        print(f"imaginebot: {self._outputs[card.job_id].plan.stem}: {reason}", file=self.err)
        self.failed = True

    async def show_moderated(self, card: JobCard, reason: str) -> None:
        await self.show_failure(card, f"withheld by the safety check ({reason})")


def _place(saved: SavedImages, plan: OutputPlan) -> tuple[Path | None, list[Path]]:
    """Link (or copy, across file systems) a job's files to the plan's names: no second encode."""

    def put(source: Path, target: Path) -> Path:
        target.unlink(missing_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        return target

    if saved.grid is None:  # a single image: it is the output
        return None, [put(saved.images[0], plan.directory / f"{plan.stem}.png")]
    grid = put(saved.grid, plan.directory / f"{plan.stem}.png")
    images = [put(path, plan.directory / f"{plan.stem}-{n}.png") for n, path in enumerate(saved.images, 1)]
    return grid, images


async def run_prompt(
    jobs: JobService, prompt: str, plans: Sequence[OutputPlan], presenter: TerminalPresenter
) -> None:
    """Submit every request of `prompt` as the operator's jobs and wait until each is written or failed.

    `jobs` must have been started with `presenter` (`await jobs.start(presenter, recover=False)`).
    """
    tickets = await jobs.imagine(OPERATOR, prompt)
    for number, (ticket, plan) in enumerate(zip(tickets, plans, strict=True), start=1):
        label = f"[{number}/{len(plans)}] {plan.stem}" if len(plans) > 1 else plan.stem
        presenter.expect(ticket, plan, label)
        ticket.show_in(None)
    try:
        await jobs.wait_idle()
    except asyncio.CancelledError:  # Ctrl-C: the jobs end as cancelled, never left for the bot to resume
        for ticket in tickets:
            await ticket.handle.cancel()
        await jobs.wait_idle()
        raise


async def imagine(
    config: Config,
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
        plans = plan_outputs(output, len(parse(prompt, limits=PromptLimits.from_config(config))))
        await asyncio.to_thread(_make_folder, output.parent)
    except (PromptError, OutputError) as exc:
        print(f"imaginebot: {exc}", file=err)
        return EXIT_USAGE
    bar = ProgressBar(err, quiet=quiet)
    bar.show(f"loading model {config.model} …")
    quiet_libraries()
    # 2. The bot's own services, on this process; 3. the jobs, one grid after another.
    presenter = TerminalPresenter(bar, out, err)
    try:
        # One local generation: on this machine's model even where the bot uses remote workers. Nothing
        # is posted, so the "attachment" is the grid PNG itself rather than a WebP no one reads.
        local = config.model_copy(update={"queue_url": None, "discord_image_format": "png"})
        async with open_services(local, grace_s=0.0) as services:
            bar.done()
            await services.jobs.start(presenter, recover=False)  # the bot's jobs are not ours to resume
            await run_prompt(services.jobs, prompt, plans, presenter)
    except (PolicyError, CredentialsRejected) as exc:  # the prompt or the API key is to fix
        bar.done()
        print(f"imaginebot: {exc}", file=err)
        return EXIT_USAGE
    except (EngineError, StoreError) as exc:
        bar.done()
        print(f"imaginebot: {exc}", file=err)
        return EXIT_FAILED
    return EXIT_FAILED if presenter.failed else EXIT_OK


def quiet_libraries() -> None:
    """Keep the terminal to our own bar and sentences: no library progress bars, advice or deprecations."""
    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


def main(config: Config, prompt: str, output: Path, *, quiet: bool = False) -> int:
    """Entry point for `imaginebot imagine`; returns the exit code (2 bad input, 1 failed, 130 Ctrl-C)."""
    try:
        return asyncio.run(imagine(config, prompt, output, quiet=quiet))
    except KeyboardInterrupt:
        print("\nimaginebot: interrupted; files already written are complete.", file=sys.stderr)
        return EXIT_INTERRUPTED
