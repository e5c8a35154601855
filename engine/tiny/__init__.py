"""The built-in `tiny` model: a small Stable-Diffusion-shaped pipeline trained here on coloured shapes.

`MODEL_DIR` is a diffusers folder (`StableDiffusionPipeline.from_pretrained(MODEL_DIR)` works offline);
`build_random_pipeline()` gives the same architecture with random weights, for fast shape-only tests.
See docs/tiny-model.md for what it can draw and how it was trained (`python -m engine.tiny.train`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["GUIDANCE", "MODEL_DIR", "TOKENIZER_DIR", "build_random_pipeline"]

MODEL_DIR: Path = Path(__file__).resolve().parent / "model"
"""The trained pipeline in diffusers folder format."""

TOKENIZER_DIR: Path = MODEL_DIR / "tokenizer"

GUIDANCE = 3.5
"""The classifier-free guidance scale the trained model draws best at, its `--stylize 100` default: of
2, 2.5, 3.5, 5 and 7.5 it gives the best prompt adherence and shapes-FID (docs/tiny-model.md)."""


def build_random_pipeline(*, seed: int = 0) -> Any:
    """A `StableDiffusionPipeline` of the tiny architecture with random (seeded) weights, on the CPU."""
    from diffusers import StableDiffusionPipeline

    from engine.tiny.architecture import build_components

    components = build_components(TOKENIZER_DIR, seed=seed)
    pipe = StableDiffusionPipeline(**components, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
