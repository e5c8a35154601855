"""Each latent painted for its own share of the steps (differential diffusion) by the inpainting pipeline.

Over a text-to-image UNet (4 channels; `LoadedModel.inpaint` shares it), diffusers' inpainting pipeline
paints the latents its mask marks and, after every step, blends the others back in as the source
re-noised to the next step's level. `SoftMask` changes that mask step by step through
`callback_on_step_end`: a latent of strength s (`engine.edits.Canvas.latent_strengths`) is blended back
until the last s share of the steps and painted from then on, as image-to-image at strength s would
paint it, while the UNet sees the whole canvas at every step. Strength 1 is painted from the first step,
0 is kept throughout; with only those two it is the pipeline's own binary mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

__all__ = ["SoftMask"]


class SoftMask:
    """The mask of one inpainting call, step by step, from per-latent strengths (rows × cols, 0–1)."""

    TENSORS = ("latents", "mask")
    """The pipeline's `callback_on_step_end_tensor_inputs` a call needs for it."""

    def __init__(self, strengths: np.ndarray, cell: int) -> None:
        self._strengths = strengths
        self._cell = cell

    def painted(self, step: int, steps: int) -> np.ndarray:
        """The latents painted at `step` (0-based) of `steps`: those of strength 1 − step/steps or more
        (and none of strength 0)."""
        return np.asarray((self._strengths >= 1.0 - step / steps - 1e-6) & (self._strengths > 0))

    def first(self) -> Image.Image:
        """The pipeline's `mask_image`: the latents painted from the first step, as whole `cell`×`cell`
        blocks (255 = paint)."""
        blocks = np.repeat(np.repeat(self.painted(0, 1), self._cell, axis=0), self._cell, axis=1)
        return Image.fromarray(np.where(blocks, 255, 0).astype(np.uint8))

    def __call__(self, pipe: Any, i: int, tensors: dict[str, Any]) -> None:
        """After step `i`: the mask the pipeline blends by after step `i` + 1."""
        import torch

        mask = tensors["mask"]  # batch (twice over with guidance) × 1 × rows × cols
        painted = torch.from_numpy(self.painted(i + 1, pipe.num_timesteps).astype(np.float32))
        tensors["mask"] = painted.to(device=mask.device, dtype=mask.dtype).expand_as(mask)
