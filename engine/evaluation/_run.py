"""One evaluation run: generate grids of four for each model and aspect through the engine's public path,
then measure them against the dataset's pictures for the same prompts.
"""

from __future__ import annotations

import math
import random
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PIL import Image

from engine.backend import Backend
from engine.evaluation._adherence import Adherence, adherence
from engine.evaluation._data import DATA, DataBackend, data_size
from engine.evaluation._grammar import draw_labels, draw_scene, one_group_scene, parse_prompt
from engine.evaluation._metrics import SHAPES_METRICS, Metrics, fidelity
from engine.types import GRID_SIZE, GenerationRequest, Progress

__all__ = ["REFERENCE_SALT", "Row", "Sample", "evaluate", "load_model_backend", "reference_images"]

REFERENCE_SALT = 1
"""The dataset draw FID compares against; the `data` model draws with salt 0, so it differs from it."""


@dataclass(frozen=True, slots=True)
class Sample:
    """A few grids of one model at one aspect, kept for the report (prompt, four images)."""

    prompt: str
    images: tuple[Image.Image, ...]


@dataclass(frozen=True, slots=True)
class Row:
    """One model at one aspect ratio: what was measured."""

    model: str
    aspect: tuple[int, int]
    width: int
    height: int
    images: int
    fid: float
    inception_score: float
    adherence: Adherence
    seconds_per_grid: float
    """Median wall time of one grid of four (backend.generate), warm-up included in the median's input."""
    seconds: float
    """Wall time of all of this row's grids."""
    samples: tuple[Sample, ...] = field(default=())

    @property
    def seconds_per_image(self) -> float:
        return self.seconds_per_grid / GRID_SIZE


def load_model_backend(model: str, *, device: str = "auto") -> Backend:
    """The backend for `model` through the engine's public path; `data` is the dataset itself."""
    if model == DATA:
        return DataBackend()
    from engine.backends import load_backend

    # Measuring, not posting: no safety check (it would add its own time to every grid).
    return load_backend(model, device=device, safety_checker="none")


def reference_images(prompts: Sequence[str], aspect: tuple[int, int]) -> list[Image.Image]:
    """The dataset's pictures FID compares with, one per prompt: the prompt's labels where it parses,
    else any one-group scene; drawn at the dataset's size for `aspect`."""
    width, height = data_size(aspect)
    images = []
    for index, prompt in enumerate(prompts):
        rng = random.Random(f"{REFERENCE_SALT}:{index}")
        labels = parse_prompt(prompt)
        if labels is None:
            images.append(draw_scene(one_group_scene(rng), rng, width=width, height=height))
        else:
            images.append(draw_labels(labels, rng, width=width, height=height))
    return images


def evaluate(
    backend: Backend,
    model: str,
    prompts: Sequence[str],
    *,
    n: int,
    aspect: tuple[int, int],
    seed: int = 0,
    metrics: Metrics = SHAPES_METRICS,
    keep: int = 2,
    on_grid: Callable[[], None] = lambda: None,
    on_step: Callable[[Progress], None] = lambda progress: None,
) -> Row:
    """Make `n` images in grids of four (grid i: prompt i cycled, seed `seed + 4 i`) and measure them."""
    if n < 2:
        raise ValueError(f"n must be at least 2 (FID needs two pictures); got {n}")
    usable = [p for p in prompts if parse_prompt(p) is not None] if model == DATA else list(prompts)
    if not usable:
        raise ValueError("the data model only draws shapes prompts, and none of these parse")
    made: list[Image.Image] = []
    asked: list[str] = []
    times: list[float] = []
    samples: list[Sample] = []
    cancelled = threading.Event()
    started = time.perf_counter()
    for grid in range(math.ceil(n / GRID_SIZE)):
        prompt = usable[grid % len(usable)]
        count = min(GRID_SIZE, n - len(made))
        request = GenerationRequest(
            prompt=prompt, aspect_ratio=aspect, seed=seed + GRID_SIZE * grid, count=count
        )
        begun = time.perf_counter()
        result = backend.generate(request, on_progress=on_step, cancelled=cancelled)
        times.append(time.perf_counter() - begun)
        made.extend(result.images)
        asked.extend([prompt] * len(result.images))
        if len(samples) < keep:
            samples.append(Sample(prompt, tuple(result.images)))
        on_grid()
    elapsed = time.perf_counter() - started
    scores = fidelity(reference_images(asked, aspect), made, metrics=metrics)
    return Row(
        model=model,
        aspect=aspect,
        width=made[0].width,
        height=made[0].height,
        images=len(made),
        fid=scores.fid,
        inception_score=scores.inception_score,
        adherence=adherence(made, asked),
        seconds_per_grid=statistics.median(times),
        seconds=elapsed,
        samples=tuple(samples),
    )
