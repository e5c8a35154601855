"""The `data` model: the shapes dataset's own pictures for each prompt, behind the backend protocol.

It is the ceiling of every figure: what a perfect shapes generator would score.
"""

from __future__ import annotations

import random
import threading
import time

from engine.backend import Capabilities, ProgressCallback
from engine.errors import GenerationError, JobCancelled
from engine.evaluation._grammar import draw_labels, parse_prompt
from engine.types import GenerationRequest, GenerationResult, Mode, Progress

__all__ = ["DATA", "DataBackend", "data_size"]

DATA = "data"
"""The model name `imaginebot eval` reads as "the dataset itself"."""
SHORT_SIDE = 64


def data_size(aspect_ratio: tuple[int, int]) -> tuple[int, int]:
    """Width and height of a dataset picture at `aspect_ratio`: the short side is the dataset's 64 px."""
    a, b = aspect_ratio
    if a >= b:
        return round(SHORT_SIDE * a / b), SHORT_SIDE
    return SHORT_SIDE, round(SHORT_SIDE * b / a)


class DataBackend:
    """Draws each image of a grid from the dataset for the prompt's labels, seeded per image."""

    name = DATA
    edits = False
    capabilities = Capabilities(
        "the shapes dataset", frozenset({"aspect", "seed"}), edits=False, image_prompts=False
    )
    checker = None

    def __init__(self, *, salt: int = 0) -> None:
        self._salt = salt  # a different salt gives a different draw of the same prompts (the FID reference)

    def generate(
        self, request: GenerationRequest, *, on_progress: ProgressCallback, cancelled: threading.Event
    ) -> GenerationResult:
        if cancelled.is_set():
            raise JobCancelled("This job was cancelled before it started.")
        started = time.perf_counter()
        labels = parse_prompt(request.prompt)
        if request.mode is not Mode.TEXT or labels is None:
            raise GenerationError(
                "The data model only draws one-group shapes prompts like "
                f"'a red circle on a blue background'; got {request.prompt!r}."
            )
        width, height = data_size(request.aspect_ratio)
        images = tuple(
            draw_labels(labels, random.Random(f"{self._salt}:{seed}"), width=width, height=height)
            for seed in request.seeds
        )
        on_progress(Progress(1, 1))
        return GenerationResult(
            images=images,
            seeds=request.seeds,
            width=width,
            height=height,
            steps=0,
            cfg=0.0,
            sampler="none",
            model=DATA,
            elapsed_s=time.perf_counter() - started,
        )

    def close(self) -> None:
        return None
