"""The GAN backend on the shipped `gan-tiny` weights: grids from seeds, aspect ratios, variations that stay
near their cell (subtle nearer than strong), upscales by resampling, and what it refuses.

Speed is not tested here (bench/ measures it); what it draws is, with thresholds measured on the
shipped weights and set with a margin (see docs/gan-model.md).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine.errors import GenerationError, JobCancelled
from engine.gan import ENGINE, MODEL_DIR
from engine.gan._backend import INVERSION_STEPS
from engine.gan.folder import CONFIG_FILE, WEIGHTS_FILE, load_generator
from engine.tiny.data import COLOURS
from engine.types import (
    VARY_STRONG,
    VARY_SUBTLE,
    GenerationRequest,
    GenerationResult,
    Mode,
    Progress,
    WeightedPrompt,
)

PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module")
def backend() -> Any:
    return ENGINE.load("gan-tiny", device="cpu", safety_checker="model")


def run(backend: Any, request: GenerationRequest, events: list[Progress] | None = None) -> GenerationResult:
    seen = events if events is not None else []
    result: GenerationResult = backend.generate(request, on_progress=seen.append, cancelled=threading.Event())
    return result


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def distance(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())


def nearest_colour(rgb: np.ndarray) -> str:
    return min(COLOURS, key=lambda name: float(np.sum((np.array(COLOURS[name]) / 255.0 - rgb) ** 2)))


def test_a_grid_is_four_cells_from_four_seeds_honestly_recorded(backend: Any) -> None:
    events: list[Progress] = []
    result = run(backend, GenerationRequest(PROMPT, seed=40), events)
    assert len(result.images) == 4
    assert result.seeds == (40, 41, 42, 43)
    assert (result.width, result.height) == (64, 64)
    assert (result.steps, result.cfg, result.sampler, result.model) == (1, 0.0, "gan", "gan-tiny")
    assert result.extra == {"mode": "text"}
    assert (result.flagged, result.checker) == ((), None)
    assert 1 <= len(events) <= 2
    assert events[-1].fraction == 1.0
    # Four different pictures, not one repeated.
    cells = result.images
    assert min(distance(cells[i], cells[j]) for i in range(4) for j in range(i + 1, 4)) > 0.01


def test_the_same_seed_gives_the_same_grid_and_each_cell_its_own_seed(backend: Any) -> None:
    first = run(backend, GenerationRequest(PROMPT, seed=7))
    again = run(backend, GenerationRequest(PROMPT, seed=7))
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(first.images, again.images, strict=True))
    # A cell depends only on its seed, not on the cells batched beside it.
    alone = run(backend, GenerationRequest(PROMPT, seed=9, count=1))
    assert np.allclose(pixels(alone.images[0]), pixels(first.images[2]), atol=2 / 255)
    other = run(backend, GenerationRequest(PROMPT, seed=8))
    assert distance(other.images[0], first.images[0]) > 0.01


@pytest.mark.parametrize(("aspect", "size"), [((3, 2), (96, 64)), ((2, 3), (64, 96)), ((16, 9), (112, 64))])
def test_aspect_ratios_widen_the_z_map(backend: Any, aspect: tuple[int, int], size: tuple[int, int]) -> None:
    result = run(backend, GenerationRequest(PROMPT, seed=1, aspect_ratio=aspect))
    assert (result.width, result.height) == size
    assert all(image.size == size for image in result.images)


@pytest.mark.parametrize(
    ("prompt", "background"),
    [
        ("a yellow square on a black background", "black"),
        ("a red circle on a blue background", "blue"),
        ("a green triangle on white", "white"),
        ("two purple circles on orange", "orange"),
    ],
)
def test_it_draws_the_named_background(backend: Any, prompt: str, background: str) -> None:
    result = run(backend, GenerationRequest(prompt, seed=100))
    hits = sum(
        nearest_colour(np.median(pixels(image).reshape(-1, 3), axis=0)) == background
        for image in result.images
    )
    assert hits >= 3, f"{hits} of 4 backgrounds are {background}"


def test_a_multi_prompt_blends_its_parts_and_refuses_weights_at_or_below_zero(backend: Any) -> None:
    parts = (WeightedPrompt("a red circle on blue", 1.0), WeightedPrompt("a red circle on yellow", 1.0))
    blended = run(
        backend,
        GenerationRequest("a red circle on blue::1 a red circle on yellow::1", weighted_prompts=parts),
    )
    plain = run(backend, GenerationRequest("a red circle on blue"))
    assert distance(blended.images[0], plain.images[0]) > 0.01
    with pytest.raises(GenerationError, match="GAN gan-tiny"):
        run(
            backend,
            GenerationRequest(
                "a::1 b::-0.5", weighted_prompts=(WeightedPrompt("a"), WeightedPrompt("b", -0.5))
            ),
        )


def _cell(backend: Any, tmp_path: Path, seed: int) -> tuple[Image.Image, Path]:
    cell = run(backend, GenerationRequest(PROMPT, seed=seed, count=1)).images[0]
    path = tmp_path / f"cell-{seed}.png"
    cell.save(path)
    return cell, path


def test_a_subtle_variation_stays_nearer_its_cell_than_a_strong_one(backend: Any, tmp_path: Path) -> None:
    subtle, strong, fresh = [], [], []
    for seed in (11, 12):
        cell, path = _cell(backend, tmp_path, seed)
        for strength, out in ((VARY_SUBTLE, subtle), (VARY_STRONG, strong)):
            request = GenerationRequest(
                PROMPT,
                seed=500,
                mode=Mode.VARIATION,
                strength=strength,
                init_image=path,
                parent=f"job#{seed}",
            )
            events: list[Progress] = []
            result = run(backend, request, events)
            assert len(events) == 2
            assert result.extra["mode"] == "variation"
            assert result.extra["strength"] == f"{strength:g}"
            assert result.extra["parent"] == f"job#{seed}"
            assert f"inversion ({INVERSION_STEPS} steps" in result.extra["notes"]
            out += [distance(image, cell) for image in result.images]
        fresh += [distance(image, cell) for image in run(backend, GenerationRequest(PROMPT, seed=900)).images]
    # Related but different: each variation differs from its cell, subtle less than strong, both less
    # than fresh pictures of the same prompt.
    assert min(subtle) > 0.002
    assert np.mean(subtle) < np.mean(strong) < np.mean(fresh), (subtle, strong, fresh)


def test_a_variation_is_reproducible_from_its_seed(backend: Any, tmp_path: Path) -> None:
    _, path = _cell(backend, tmp_path, 3)
    request = GenerationRequest(PROMPT, seed=77, mode=Mode.VARIATION, strength=VARY_STRONG, init_image=path)
    first, again = run(backend, request), run(backend, request)
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(first.images, again.images, strict=True))


def test_upscale_is_a_2x_resample_said_in_the_recipe(backend: Any, tmp_path: Path) -> None:
    cell, path = _cell(backend, tmp_path, 5)
    result = run(
        backend, GenerationRequest(PROMPT, seed=5, count=1, mode=Mode.UPSCALE, init_image=path, parent="j#2")
    )
    (big,) = result.images
    assert big.size == (128, 128)
    assert (result.sampler, result.steps) == ("lanczos", 0)
    assert result.extra["mode"] == "upscale"
    assert "Lanczos" in result.extra["notes"]
    assert result.extra["parent"] == "j#2"
    assert distance(big.resize((64, 64), Image.Resampling.BOX), cell) < 0.02
    with pytest.raises(GenerationError, match="larger than the largest side"):
        run(backend, GenerationRequest(PROMPT, mode=Mode.UPSCALE, init_image=path, max_side=100))


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (GenerationRequest(PROMPT, mode=Mode.EDIT, edit="zoom 2"), "cannot paint"),
        (GenerationRequest(PROMPT, mode=Mode.IMAGE), "cannot start from pictures"),
        (GenerationRequest(PROMPT, negative_prompt="red"), "cannot keep things out"),
        (GenerationRequest(PROMPT, mode=Mode.VARIATION, strength=0.6), "needs the image it starts from"),
    ],
)
def test_what_a_gan_cannot_do_is_refused_naming_the_engine(
    backend: Any, request_: GenerationRequest, words: str
) -> None:
    with pytest.raises(GenerationError, match=words) as caught:
        run(backend, request_)
    assert "GAN gan-tiny" in str(caught.value) or request_.mode is Mode.VARIATION


def test_a_cancelled_job_stops(backend: Any, tmp_path: Path) -> None:
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(JobCancelled):
        backend.generate(GenerationRequest(PROMPT), on_progress=lambda _: None, cancelled=cancelled)
    _, path = _cell(backend, tmp_path, 4)
    request = GenerationRequest(PROMPT, mode=Mode.VARIATION, strength=0.6, init_image=path)
    with pytest.raises(JobCancelled):
        backend.generate(request, on_progress=lambda _: None, cancelled=cancelled)


def test_a_safety_checker_sees_every_image() -> None:
    flagging = ENGINE.load("gan-tiny", device="cpu", safety_checker="tests.safety_checkers:flag_everything")
    result = run(flagging, GenerationRequest(PROMPT, seed=2))
    assert result.flagged == (True, True, True, True)
    assert result.checker == flagging.checker is not None


def test_the_built_in_model_is_a_small_folder_of_the_same_format() -> None:
    assert sorted(p.name for p in MODEL_DIR.iterdir() if p.suffix in (".json", ".safetensors")) == [
        CONFIG_FILE,
        WEIGHTS_FILE,
        "training.json",
    ]
    assert (MODEL_DIR / WEIGHTS_FILE).stat().st_size < 8_000_000
    generator = load_generator(MODEL_DIR, name="gan-tiny")
    assert generator.config.native == 64
