"""`imaginebot eval --model M [--model M2 …]`: measure engines on the shapes prompts, no Discord.

Each model is loaded through the engine's public path (`engine.backends.load_backend`; `data` is the
shapes dataset itself, the ceiling) and makes `--n` images in seeded grids of four per `--ar`. The
report (eval.md with the table, eval.png, sample grids) goes to `--out`, and the table is printed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from bot.config import Config
from bot.imagine_cli import quiet_libraries
from engine.errors import EngineError
from engine.evaluation import (
    NO_INCEPTION,
    MetricsError,
    Row,
    evaluate,
    load_model_backend,
    markdown_table,
    pick_metrics,
    shapes_prompts,
    write_report,
)
from engine.types import GRID_SIZE, Progress

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "EvalOptions",
    "UsageError",
    "main",
    "options_from_args",
    "parse_aspect",
    "run_eval",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(ValueError):
    """An option cannot be used; the message says what to pass instead."""


@dataclass(frozen=True, slots=True)
class EvalOptions:
    models: tuple[str, ...]
    n: int = 200
    aspects: tuple[tuple[int, int], ...] = ((1, 1),)
    prompts_file: Path | None = None
    out: Path = Path("report")
    seed: int = 0
    inception_weights: Path | None = None
    quiet: bool = False


def parse_aspect(text: str) -> tuple[int, int]:
    """`3:2` → (3, 2); whole numbers above 0, as `--ar` takes them in a prompt."""
    left, colon, right = text.partition(":")
    if colon and left.strip().isdigit() and right.strip().isdigit() and int(left) > 0 and int(right) > 0:
        return int(left), int(right)
    raise UsageError(f"`--ar` takes two whole numbers above 0 like 3:2; got {text!r}.")


def _read_prompts(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the prompts file {str(path)!r}: {exc.strerror or exc}.") from exc
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise UsageError(f"the prompts file {str(path)!r} has no prompts (one per line).")
    return prompts


def _header(options: EvalOptions, label: str, note: str | None) -> str:
    argv = ["imaginebot", "eval"]
    for model in options.models:
        argv += ["--model", model]
    if options.prompts_file is not None:
        argv += ["--prompts", str(options.prompts_file)]
    argv += ["--n", str(options.n)]
    for a, b in options.aspects:
        argv += ["--ar", f"{a}:{b}"]
    argv += ["--seed", str(options.seed), "--out", str(options.out)]
    prompts = (
        f"the prompts of {options.prompts_file}"
        if options.prompts_file is not None
        else "the seeded shapes prompts (`engine.evaluation.shapes_prompts`)"
    )
    lines = [
        "# imaginebot eval",
        "",
        f"`{' '.join(argv)}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {prompts}.",
        "",
        f"{label} compares each row's pictures with the shapes dataset's own pictures for the same prompts. "
        "Adherence: the share of pictures whose background colour, shape kind and shape colour the shapes "
        "network reads as the prompt names them (only prompts of the dataset's grammar are scored). "
        "Time: the median wall time of one grid of four on this machine.",
    ]
    if note:
        lines += ["", note]
    return "\n".join(lines)


def run_eval(options: EvalOptions, *, device: str = "auto", stdout: TextIO, stderr: TextIO) -> int:
    """Measure every model at every aspect, write the report, print the table; returns the exit code."""
    # 1. Check the options before loading any model, which can take minutes.
    try:
        if options.n < 2:
            raise UsageError(f"`--n` must be at least 2 (FID needs two pictures); got {options.n}.")
        prompts = (
            _read_prompts(options.prompts_file)
            if options.prompts_file is not None
            else shapes_prompts(math.ceil(options.n / GRID_SIZE), seed=options.seed)
        )
        metrics = pick_metrics(options.inception_weights)
        options.out.mkdir(parents=True, exist_ok=True)
    except (UsageError, MetricsError) as exc:
        print(f"imaginebot: {exc}", file=stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"imaginebot: cannot create {str(options.out)!r}: {exc.strerror or exc}.", file=stderr)
        return EXIT_USAGE
    note = NO_INCEPTION if options.inception_weights is None else None
    if note:
        print(note, file=stderr)
    quiet_libraries()
    # 2. One bar over every grid of the run; the current model's denoising step beside it.
    grids = math.ceil(options.n / GRID_SIZE) * len(options.aspects) * len(options.models)
    bar = tqdm(total=grids, file=stderr, unit="grid", disable=options.quiet, dynamic_ncols=True)
    rows: list[Row] = []
    try:
        for model in options.models:
            bar.set_description(f"loading {model}")
            backend = load_model_backend(model, device=device)
            try:
                for aspect in options.aspects:
                    bar.set_description(f"{model} {aspect[0]}:{aspect[1]}")

                    def step(progress: Progress) -> None:
                        bar.set_postfix_str(f"step {progress.step}/{progress.total}", refresh=False)

                    def grid_done() -> None:
                        bar.update(1)

                    rows.append(
                        evaluate(
                            backend,
                            model,
                            prompts,
                            n=options.n,
                            aspect=aspect,
                            seed=options.seed,
                            metrics=metrics,
                            on_grid=grid_done,
                            on_step=step,
                        )
                    )
            finally:
                backend.close()
    except (EngineError, ValueError) as exc:
        bar.close()
        print(f"imaginebot: {exc}", file=stderr)
        return EXIT_FAILED
    bar.close()
    # 3. The report, and the table on the terminal.
    table = write_report(rows, metrics, options.out, header=_header(options, metrics.fid_label, note))
    print(markdown_table(rows, metrics), file=stdout, end="")
    print(f"report: {table} (plot {options.out / 'eval.png'})", file=stdout)
    return EXIT_OK


def options_from_args(args: argparse.Namespace) -> EvalOptions:
    """The options of `imaginebot eval`'s command line (bot/cli.py); `UsageError` names a bad one."""
    return EvalOptions(
        models=tuple(args.model),
        n=args.n,
        aspects=tuple(parse_aspect(text) for text in args.ar or ["1:1"]),
        prompts_file=args.prompts,
        out=args.out,
        seed=args.seed,
        inception_weights=args.inception_weights,
        quiet=args.quiet,
    )


def main(config: Config, args: argparse.Namespace) -> int:
    """Entry point for `imaginebot eval`: the device and the Inception weights come from the settings
    unless the command line names them; returns the exit code (2 bad options, 1 failed, 130 Ctrl-C)."""
    try:
        options = options_from_args(args)
    except UsageError as exc:
        print(f"imaginebot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if options.inception_weights is None and config.inception_weights is not None:
        options = replace(options, inception_weights=config.inception_weights)
    try:
        return run_eval(options, device=config.device, stdout=sys.stdout, stderr=sys.stderr)
    except KeyboardInterrupt:
        print("\nimaginebot: interrupted; no report written.", file=sys.stderr)
        return 130
