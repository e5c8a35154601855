"""Model families: what a loaded pipeline draws best (native size) and its default steps and guidance.

Detected from the pipeline itself (class, UNet config) plus the model's name for distilled "Turbo"
models, which look like their base architecture but want 1–4 steps and no classifier-free guidance.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from engine.tiny import GUIDANCE

__all__ = ["Family", "FamilyKind", "detect_family"]


class FamilyKind(enum.StrEnum):
    SD = "sd"  # Stable Diffusion 1.x / 2.x
    SDXL = "sdxl"
    TINY = "tiny"  # the built-in test model


@dataclass(frozen=True, slots=True)
class Family:
    """Defaults for one model family; the request mapping scales from these."""

    kind: FamilyKind
    native_size: int
    """Side in pixels of the square the model was trained on; other aspect ratios keep its area."""
    default_steps: int
    default_cfg: float
    turbo: bool = False
    """Distilled for 1–4 steps without guidance (SDXL-Turbo, SD-Turbo)."""
    max_steps: int | None = None
    """Upper bound for steps derived from `--quality` (never for an explicit `--steps`)."""
    size_multiple: int = 8

    @property
    def native_area(self) -> int:
        return self.native_size * self.native_size


def detect_family(pipe: Any, model_id: str, *, tiny: bool = False) -> Family:
    """Work out the family of a loaded text-to-image pipeline."""
    vae_scale = int(getattr(pipe, "vae_scale_factor", 8))
    sample_size = pipe.unet.config.sample_size
    native = int(sample_size if isinstance(sample_size, int) else sample_size[0]) * vae_scale
    is_xl = "XL" in type(pipe).__name__
    # Distilled models are named for it; their configs are the base model's, so the name is the signal.
    turbo = any(word in model_id.lower() for word in ("turbo", "lightning"))
    if tiny:
        return Family(
            FamilyKind.TINY, native, default_steps=20, default_cfg=GUIDANCE, size_multiple=vae_scale
        )
    kind = FamilyKind.SDXL if is_xl else FamilyKind.SD
    if turbo:
        # 2 steps is the sweet spot for a grid: 1 step is noticeably soft, 4 barely better than 2.
        return Family(kind, native, default_steps=2, default_cfg=0.0, turbo=True, max_steps=4)
    if is_xl:
        return Family(kind, native, default_steps=30, default_cfg=6.0)
    return Family(kind, native, default_steps=30, default_cfg=7.5)
