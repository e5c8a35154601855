"""Benchmark: what `imaginebot imagine` adds on top of the raw diffusers call.

For the same request, in one process and on the same pipeline object: the time from the prompt
text to the grid encoded on disk, as `imaginebot imagine` runs it on the bot's own services (parse
→ job row → queue → backend with progress and previews → grid and four images written with their
recipes → job row succeeded → files linked to the output), divided by the raw `pipe(...)` call
alone. Target: ≤ 1.05 where the raw call takes ≥ 2 s. The tiny model draws at one fixed pixel area
(its native 64×64), so the raw call is brought up to that time with more denoising steps rather than
a larger size.

    PYTHONPATH=. .venv/bin/python bench/serving_overhead.py [--model tiny] [--rounds 9] [--min-raw-s 2]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bot.config import load_config
from bot.imagine_cli import OutputPlan, ProgressBar, TerminalPresenter, quiet_libraries, run_prompt
from bot.jobs import JobService
from bot.jobs.conversions import to_generation_request
from bot.prompt import parse
from bot.services import open_services
from engine.backends import load_backend
from engine.backends.diffusion import DiffusersBackend
from engine.types import GenerationRequest, GenerationResult

SEED = 7
PROMPT = f"a red circle on a blue background --seed {SEED}"
MAX_STEPS = 150  # the most `--steps` the prompt parser accepts


class Clock:
    """Wall time and this process's CPU time (all threads) since it was made."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def raw_call(
    pipe: Any, request: GenerationRequest, result: GenerationResult
) -> tuple[tuple[float, float], list[Any]]:
    """The same generation as a diffusers user would write it; returns ((wall, cpu) seconds, images)."""
    import torch

    clock = Clock()
    output = pipe(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt or None,
        num_images_per_prompt=len(request.seeds),
        width=result.width,
        height=result.height,
        num_inference_steps=result.steps,
        guidance_scale=result.cfg,
        generator=[torch.Generator("cpu").manual_seed(seed) for seed in request.seeds],
        output_type="pil",
    )
    return clock.read(), list(output.images)


async def served(
    jobs: JobService, text: str, presenter: TerminalPresenter, directory: Path
) -> tuple[float, float]:
    """Prompt text to files on disk, as `imaginebot imagine` does it (progress bar drawn to memory)."""
    clock = Clock()
    await run_prompt(jobs, text, [OutputPlan(directory, "grid")], presenter)
    return clock.read()


async def main_async(model: str, rounds: int, min_raw_s: float) -> None:
    quiet_libraries()
    backend = load_backend(model, device="cpu")
    assert isinstance(backend, DiffusersBackend)
    pipe = backend.model.text2img
    presenter = TerminalPresenter(ProgressBar(io.StringIO()), io.StringIO(), io.StringIO())
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "out"
        directory.mkdir()
        config = load_config(model=model, device="cpu", data_dir=Path(tmp) / "data")
        async with open_services(config, backend=backend) as services:
            await services.jobs.start(presenter, recover=False)
            # 1. Calibrate: enough steps that the raw call takes at least `min_raw_s`. The served
            #    warm-up also tells the size and guidance the backend chose, and sets its scheduler.
            request = to_generation_request(parse(f"{PROMPT} --steps 10")[0], seed=SEED)
            result = await (await services.queue.submit("bench", request)).result()
            (raw_s, _), _ = raw_call(pipe, request, result)
            steps = min(MAX_STEPS, max(10, math.ceil(10 * min_raw_s * 1.15 / raw_s)))
            text = f"{PROMPT} --steps {steps}"
            request = to_generation_request(parse(text)[0], seed=SEED)
            result = dataclasses.replace(result, steps=steps)
            size = f"{result.width}x{result.height}"
            print(f"model={model}: 4 images of {size}, {steps} steps, cfg {result.cfg:g}")
            await served(services.jobs, text, presenter, directory)  # warm-up at the measured size

            # 2. Alternate raw and served runs so drift on a noisy machine hits both alike.
            raws, serves, same = [], [], True
            for _ in range(rounds):
                raw_s, raw_images = raw_call(pipe, request, result)
                serves.append(await served(services.jobs, text, presenter, directory))
                raws.append(raw_s)
                cells = [directory / f"grid-{n}.png" for n in range(1, 5)]
                same = same and _same_pixels(raw_images, cells)
    for kind, pick in (("wall", 0), ("cpu", 1)):
        raw = [times[pick] for times in raws]
        serve = [times[pick] for times in serves]
        print(f"{kind} s, raw pipe(...): " + " ".join(f"{s:.3f}" for s in raw))
        print(f"{kind} s, served:        " + " ".join(f"{s:.3f}" for s in serve))
        ratios = " ".join(f"{s / r:.3f}" for s, r in zip(serve, raw, strict=True))
        print(f"{kind} per-round ratios: {ratios}")
        print(
            f"{kind} overhead ratio: median {statistics.median(serve) / statistics.median(raw):.3f}, "
            f"best-of {min(serve) / min(raw):.3f}"
        )
    print(f"served images identical to the raw call's: {same}")


def _same_pixels(raw_images: list[Any], paths: tuple[Path, ...]) -> bool:
    for image, path in zip(raw_images, paths, strict=True):
        with Image.open(path) as saved:
            if not np.array_equal(np.asarray(image.convert("RGB")), np.asarray(saved.convert("RGB"))):
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--min-raw-s", type=float, default=2.0)
    args = parser.parse_args()
    asyncio.run(main_async(args.model, args.rounds, args.min_raw_s))


if __name__ == "__main__":
    main()
