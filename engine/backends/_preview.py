"""Cheap previews: latents → RGB through a linear map, no VAE decode.

The map is fitted once per model by least squares: encode a palette image with the model's own VAE
and regress the pixels on the latents. That works for any VAE (SD, SDXL, the tiny one) without
hard-coding coefficients, and costs one small encode the first time a preview is asked for.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["LatentPreviewer", "grid_of"]

_PALETTE_BLOCKS = 8
"""Palette image: 8×8 blocks of random colours, each block 2 latent pixels wide."""


def grid_of(cells: list[Image.Image]) -> Image.Image:
    """Cells edge to edge: 4 as a 2×2 grid (1 top-left … 4 bottom-right), otherwise one row."""
    w, h = cells[0].size
    cols = 2 if len(cells) == 4 else len(cells)
    rows = (len(cells) + cols - 1) // cols
    grid = Image.new("RGB", (w * cols, h * rows))
    for i, cell in enumerate(cells):
        grid.paste(cell, ((i % cols) * w, (i // cols) * h))
    return grid


class LatentPreviewer:
    """Turns pipeline latents (already multiplied by the VAE scaling factor) into a small RGB grid."""

    def __init__(self, vae: Any, vae_scale_factor: int, *, scale: int = 4) -> None:
        self._vae = vae
        self._vae_scale = vae_scale_factor
        self._scale = scale
        self._weights: Any = None  # (C + 1, 3) float32 on the VAE's device; fitted lazily

    def _fit(self) -> Any:
        import torch

        vae = self._vae
        block = 2 * self._vae_scale
        rng = np.random.default_rng(0)
        colours = rng.random((_PALETTE_BLOCKS, _PALETTE_BLOCKS, 3), dtype=np.float32)
        pixels = np.kron(colours, np.ones((block, block, 1), dtype=np.float32))  # (side, side, 3) in [0, 1]
        image = torch.from_numpy(pixels).permute(2, 0, 1)[None] * 2 - 1
        with torch.no_grad():
            latents = self._encode(vae, image)
            if not torch.isfinite(latents).all():
                # fp16 SDXL VAEs overflow; fit on a float32 copy once rather than give up on previews.
                latents = self._encode(copy.deepcopy(vae).float(), image)
        c, h, w = latents.shape[1:]
        x = latents[0].float().cpu().permute(1, 2, 0).reshape(h * w, c)
        x = torch.cat([x, torch.ones(h * w, 1)], dim=1)
        target = torch.from_numpy(pixels[:: self._vae_scale, :: self._vae_scale][:h, :w]).reshape(h * w, 3)
        solution = torch.linalg.lstsq(x, target).solution  # (C + 1, 3)
        return solution.to(vae.device)

    @staticmethod
    def _encode(vae: Any, image: Any) -> Any:
        param = next(vae.parameters())
        dist = vae.encode(image.to(param.device, param.dtype)).latent_dist
        return dist.mean * vae.config.scaling_factor

    def __call__(self, latents: Any) -> Image.Image:
        """A grid preview of a batch of latents `(B, C, h, w)`."""
        import torch

        if self._weights is None:
            self._weights = self._fit()
        w = self._weights.to(latents.device)
        with torch.no_grad():
            rgb = torch.einsum("bchw,cr->bhwr", latents.float(), w[:-1]) + w[-1]
            pixels = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        cells = [Image.fromarray(p) for p in pixels]
        grid = grid_of(cells)
        return grid.resize((grid.width * self._scale, grid.height * self._scale), Image.Resampling.BILINEAR)
