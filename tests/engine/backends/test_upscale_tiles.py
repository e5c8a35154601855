"""Upscale geometry: enlarging, tiling with overlap, blending tiles back."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from engine.backends._upscale import blend_tiles, enlarge, tile_boxes


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_enlarge_doubles_to_multiples_of_8() -> None:
    assert enlarge(_noise(64, 64)).size == (128, 128)
    assert enlarge(_noise(680, 384)).size == (1360, 768)
    assert enlarge(_noise(60, 36)).size == (120, 72)


@pytest.mark.parametrize(("width", "height"), [(128, 128), (1024, 1024), (1360, 768), (96, 200), (40, 40)])
def test_tiles_cover_the_image_and_overlap(width: int, height: int) -> None:
    tile, overlap = 64, 8
    boxes = tile_boxes(width, height, tile=tile, overlap=overlap)
    covered = np.zeros((height, width), dtype=int)
    for left, top, right, bottom in boxes:
        assert right - left == min(tile, width)
        assert bottom - top == min(tile, height)
        assert left % 8 == 0
        assert top % 8 == 0
        covered[top:bottom, left:right] += 1
    assert covered.min() >= 1
    lefts = sorted({box[0] for box in boxes})
    for a, b in itertools.pairwise(lefts):
        assert a + min(tile, width) - b >= overlap


def test_blending_the_tiles_of_an_image_gives_the_image_back() -> None:
    image = _noise(200, 136, seed=3)
    boxes = tile_boxes(200, 136, tile=64, overlap=16)
    assert blend_tiles(image.size, boxes, [image.crop(b) for b in boxes], 16).tobytes() == image.tobytes()


def test_blending_cross_fades_in_the_overlap() -> None:
    boxes = [(0, 0, 64, 64), (48, 0, 112, 64)]
    black, white = Image.new("RGB", (64, 64), "black"), Image.new("RGB", (64, 64), "white")
    row = np.asarray(blend_tiles((112, 64), boxes, [black, white], 16))[32, :, 0].astype(int)
    assert row[:48].max() == 0
    assert row[64:].min() == 255
    overlap = row[48:64]
    assert (np.diff(overlap) >= 0).all()
    assert 0 < overlap[8] < 255
