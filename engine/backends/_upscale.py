"""Upscaling helpers: enlarge, cut into overlapping tiles, and blend the tiles back seamlessly.

The diffusion pass itself runs in the backend (image-to-image over each tile); this module is plain
Pillow/numpy so the geometry is easy to test.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

__all__ = ["UPSCALE_FACTOR", "UPSCALE_STRENGTH", "blend_tiles", "enlarge", "tile_boxes"]

UPSCALE_FACTOR = 2
UPSCALE_STRENGTH = 0.3
"""Image-to-image strength of the diffusion pass: enough to add detail, little enough to keep the
composition of the enlarged cell."""

Box = tuple[int, int, int, int]  # left, top, right, bottom


def enlarge(image: Image.Image, factor: int = UPSCALE_FACTOR, multiple: int = 8) -> Image.Image:
    """Lanczos-resample by `factor`, to the nearest multiple of `multiple` on each side."""
    width = max(multiple, round(image.width * factor / multiple) * multiple)
    height = max(multiple, round(image.height * factor / multiple) * multiple)
    return image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)


def _starts(length: int, tile: int, overlap: int, multiple: int) -> list[int]:
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    span = length - tile
    starts = [round(span * i / (count - 1) / multiple) * multiple for i in range(count)]
    starts[-1] = span  # the last tile ends exactly at the edge
    return starts


def tile_boxes(width: int, height: int, *, tile: int, overlap: int, multiple: int = 8) -> list[Box]:
    """Tiles of `tile` pixels (or the whole side when smaller) overlapping by at least `overlap`."""
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile); got overlap={overlap}, tile={tile}")
    tw, th = min(tile, width), min(tile, height)
    return [
        (left, top, left + tw, top + th)
        for top in _starts(height, tile, overlap, multiple)
        for left in _starts(width, tile, overlap, multiple)
    ]


def _ramp(length: int, overlap: int) -> np.ndarray:
    # Weight rises linearly over `overlap` pixels from each edge; never zero, so every pixel is covered.
    distance = np.minimum(np.arange(length), np.arange(length)[::-1]) + 0.5
    return np.minimum(1.0, distance / max(overlap, 1)).astype(np.float32)


def blend_tiles(
    size: tuple[int, int], boxes: list[Box], tiles: list[Image.Image], overlap: int
) -> Image.Image:
    """Paste tiles into an image of `size`, cross-fading where they overlap."""
    width, height = size
    total = np.zeros((height, width, 3), dtype=np.float32)
    weight = np.zeros((height, width, 1), dtype=np.float32)
    for (left, top, right, bottom), tile in zip(boxes, tiles, strict=True):
        w = np.outer(_ramp(bottom - top, overlap), _ramp(right - left, overlap))[..., None]
        total[top:bottom, left:right] += np.asarray(tile.convert("RGB"), dtype=np.float32) * w
        weight[top:bottom, left:right] += w
    pixels = np.clip(np.round(total / weight), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)
