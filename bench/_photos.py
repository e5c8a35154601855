"""Real-looking images for benchmarks: the smooth shading and grain of decoded diffusion output, and
a simulated device that returns them (its time is a sleep, so the CPU stays free)."""

from __future__ import annotations

import threading
import time

import numpy as np
from PIL import Image, ImageFilter

from engine.backend import Capabilities, ProgressCallback
from engine.errors import JobCancelled
from engine.types import GenerationRequest, GenerationResult, Progress


def photo_like(seed: int, size: int) -> Image.Image:
    """A picture with the smooth shading and fine grain of a decoded diffusion image."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    phase = rng.uniform(0, 6, 3)
    base = np.stack(
        [np.sin(x * 7 + y * 3 + phase[0]), np.cos(y * 5 - x * 2 + phase[1]), np.sin((x + y) * 4)], -1
    )
    pixels = np.clip(base * 90 + 128 + rng.normal(0, 14, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(1.0))


def latent_preview(cells: tuple[Image.Image, ...]) -> Image.Image:
    """What the diffusers backend previews: 2×2 cells at latent resolution (1/8), scaled up 4×."""
    side = cells[0].width // 8
    small = [cell.resize((side, side), Image.Resampling.BILINEAR) for cell in cells]
    grid = Image.new("RGB", (side * 2, side * 2))
    for index, cell in enumerate(small):
        grid.paste(cell, ((index % 2) * side, (index // 2) * side))
    return grid.resize((grid.width * 4, grid.height * 4), Image.Resampling.BILINEAR)


class PhotoBackend:
    """A device that sleeps T a job in `steps` steps (the CPU stays free) and returns real-size images."""

    name = "photo-sim"
    checker = None

    def __init__(self, seconds: float, cell: int, *, steps: int = 4, sets: int = 2) -> None:
        self.seconds = seconds
        self.steps = steps
        self.capabilities = Capabilities(self.name)
        self.sets = [tuple(photo_like(s * 4 + n, cell) for n in range(4)) for s in range(sets)]
        self.preview = latent_preview(self.sets[0])
        self.cell = cell
        self.starts: list[float] = []
        self.done: dict[int, float] = {}
        """When each job's images were returned, by its first seed."""

    def generate(
        self, request: GenerationRequest, *, on_progress: ProgressCallback, cancelled: threading.Event
    ) -> GenerationResult:
        began = time.monotonic()
        self.starts.append(began)
        for step in range(1, self.steps + 1):
            if cancelled.wait(max(0.0, began + self.seconds * step / self.steps - time.monotonic())):
                raise JobCancelled("cancelled")
            on_progress(Progress(step=step, total=self.steps, preview=self.preview))
        images = self.sets[request.seeds[0] % len(self.sets)]
        self.done[request.seeds[0]] = time.monotonic()
        return GenerationResult(
            images=images[: len(request.seeds)],
            seeds=request.seeds,
            width=self.cell,
            height=self.cell,
            steps=self.steps,
            cfg=request.cfg if request.cfg is not None else 7.0,
            sampler=request.sampler or "euler_a",
            model=self.name,
            elapsed_s=time.monotonic() - began,
        )

    def close(self) -> None:
        pass
