"""Picture-level behaviour of the backend on the trained tiny model: what a variation keeps, what an upscale
keeps, what `--chaos`, `--stop` and `--tile` do. Needs the trained weights (`engine.tiny.MODEL_DIR`)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.backends.diffusion import DiffusersBackend
from engine.tiny.data import Scene, Shape, draw
from engine.types import VARY_STRONG, VARY_SUBTLE, GenerationResult, Mode
from tests.engine.backends.conftest import run_job

PROMPT = "a big red circle on a blue background"


@pytest.fixture(scope="module")
def grid(tiny: DiffusersBackend) -> GenerationResult:
    return run_job(tiny, PROMPT, seed=1234, steps=None)


def _array(image: Image.Image, size: int | None = None) -> np.ndarray:
    if size is not None:
        image = image.resize((size, size), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float64)


def _corr(a: Image.Image, b: Image.Image, size: int = 16) -> float:
    return float(np.corrcoef(_array(a, size).ravel(), _array(b, size).ravel())[0, 1])


def _spread(images: tuple[Image.Image, ...]) -> float:
    arrays = [_array(image) for image in images]
    return float(np.mean([np.abs(x - y).mean() for x, y in itertools.combinations(arrays, 2)]))


def test_a_variation_is_related_to_its_cell_but_differs(
    tiny: DiffusersBackend, grid: GenerationResult, tmp_path: Path
) -> None:
    cell = grid.images[1]
    cell.save(source := tmp_path / "cell.png")
    subtle = run_job(
        tiny, PROMPT, mode=Mode.VARIATION, init_image=source, strength=VARY_SUBTLE, seed=9, steps=None
    )
    strong = run_job(
        tiny, PROMPT, mode=Mode.VARIATION, init_image=source, strength=VARY_STRONG, seed=9, steps=None
    )
    unrelated = np.mean([_corr(cell, other) for other in (grid.images[0], grid.images[2], grid.images[3])])
    for image in subtle.images:
        assert _corr(cell, image) > 0.9
        assert np.abs(_array(cell) - _array(image)).mean() > 1.0  # not a copy
    assert np.mean([_corr(cell, image) for image in strong.images]) > unrelated
    assert _spread(strong.images) > _spread(subtle.images)


def test_an_upscale_keeps_the_composition_of_its_cell(
    tiny: DiffusersBackend, grid: GenerationResult, tmp_path: Path
) -> None:
    cell = grid.images[2]
    cell.save(source := tmp_path / "cell.png")
    result = run_job(tiny, PROMPT, mode=Mode.UPSCALE, init_image=source, seed=5, steps=None)
    (big,) = result.images
    assert big.size == (128, 128)
    assert _corr(cell, big, 32) > 0.95
    assert np.abs(_array(cell, 32) - _array(big, 32)).mean() < 20


def test_chaos_spreads_the_four_images_further_apart(tiny: DiffusersBackend) -> None:
    calm = [_spread(run_job(tiny, PROMPT, seed=s, steps=8).images) for s in (10, 20, 30)]
    wild = [_spread(run_job(tiny, PROMPT, seed=s, steps=8, chaos=100).images) for s in (10, 20, 30)]
    assert np.mean(wild) > 1.1 * np.mean(calm)  # measured 1.19


def test_stop_gives_an_unfinished_but_recognisable_picture(
    tiny: DiffusersBackend, grid: GenerationResult
) -> None:
    stopped = run_job(tiny, PROMPT, seed=1234, steps=None, stop=50)
    assert stopped.steps == 10
    for done, early in zip(grid.images, stopped.images, strict=True):
        assert _corr(done, early) > 0.8
        assert np.abs(_array(done) - _array(early)).mean() > 1.0


def test_tile_makes_images_that_wrap_around(tiny: DiffusersBackend) -> None:
    def seam(image: Image.Image) -> float:
        pixels = _array(image)
        inside = np.abs(np.diff(pixels, axis=1)).mean() + np.abs(np.diff(pixels, axis=0)).mean()
        across = np.abs(pixels[:, 0] - pixels[:, -1]).mean() + np.abs(pixels[0] - pixels[-1]).mean()
        return float(across / inside)

    prompt = "three big yellow circles on a purple background"
    tiled = run_job(tiny, prompt, seed=77, steps=None, tile=True)
    plain = run_job(tiny, prompt, seed=77, steps=None)
    assert np.mean([seam(image) for image in tiled.images]) < 2.0
    assert np.mean([seam(image) for image in tiled.images]) < np.mean([seam(image) for image in plain.images])


def test_a_higher_image_weight_follows_the_picture_more(tiny: DiffusersBackend, tmp_path: Path) -> None:
    # A picture of the kind the tiny model knows (its VAE only renders the dataset's colours well),
    # with a prompt that asks for other colours and another shape.
    scene = Scene("blue", (Shape("circle", "red", 1, "big", "in the top left"),), ((0.3, 0.3),))
    picture = draw(scene)
    picture.save(source := tmp_path / "start.png")
    prompt = "a yellow square on a black background"

    def cells(weight: float) -> tuple[Image.Image, ...]:
        return run_job(
            tiny, prompt, mode=Mode.IMAGE, init_image=source, image_weight=weight, seed=21, steps=None
        ).images

    low, high = cells(0.5), cells(2.0)
    low_corr = [_corr(picture, image) for image in low]
    high_corr = [_corr(picture, image) for image in high]
    assert min(high_corr) > max(low_corr)
    assert np.mean(high_corr) > 0.5
    assert _spread(high) > 1.0  # four images, not four copies of the picture
