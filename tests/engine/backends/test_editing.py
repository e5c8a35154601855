"""Edits (Zoom Out, Pan, Make Square, Vary (Region)) and Upscale (Subtle/Creative) on the diffusers backend,
random weights: sizes, seeds, recipe fields, refusals, progress, the safety check and the OOM retry."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline
from PIL import Image

from engine.backends.diffusion import PREVIEW_EVERY, DiffusersBackend
from engine.edits import CANNOT_PAINT, canvas_for, parse_edit
from engine.errors import GenerationError, JobCancelled
from engine.images import recipe_text
from engine.tiny import build_random_pipeline
from engine.types import UPSCALE_CREATIVE, UPSCALE_SUBTLE, GenerationRequest, Mode, Progress
from tests.engine.backends.conftest import run_job


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("edits") / "cell.png"
    Image.effect_noise((64, 48), 60).convert("RGB").save(path)
    return path


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def edit(backend: Any, source: Path, spec: str, **fields: Any) -> Any:
    fields.setdefault("seed", 21)
    return run_job(backend, mode=Mode.EDIT, init_image=source, edit=spec, **fields)


@pytest.mark.parametrize(
    ("spec", "size", "label"),
    [
        ("zoom 2", (64, 48), "zoom 2x"),
        ("zoom 1.5", (64, 48), "zoom 1.5x"),
        ("pan left", (96, 48), "pan left"),
        ("pan down", (64, 72), "pan down"),
        ("square", (64, 64), "make square"),
        ("region 1 5 9", (64, 48), "vary region 1,5,9"),
    ],
)
def test_an_edit_is_four_fills_of_the_canvas(
    random_backend: DiffusersBackend, source: Path, spec: str, size: tuple[int, int], label: str
) -> None:
    result = edit(random_backend, source, spec, steps=3, parent="job-1#2")
    assert len(result.images) == 4
    assert {image.size for image in result.images} == {size}
    assert (result.width, result.height) == size
    assert result.seeds == (21, 22, 23, 24)
    assert result.steps == 3  # strength 1: every step runs
    assert result.extra["mode"] == label
    assert result.extra["parent"] == "job-1#2"
    assert result.extra["strength"] == "1"
    assert _pixels(result.images[0]).std() > 5
    assert np.abs(_pixels(result.images[0]) - _pixels(result.images[1])).mean() > 5


def test_the_recipe_names_the_operation_and_its_parent(
    random_backend: DiffusersBackend, source: Path
) -> None:
    request = GenerationRequest(
        "a lighthouse", mode=Mode.EDIT, init_image=source, edit="pan left", parent="abc#3", steps=2
    )
    result = random_backend.generate(request, on_progress=lambda _: None, cancelled=threading.Event())
    recipe = recipe_text(request, result, 1)
    assert "mode: pan left, " in recipe
    assert "parent: abc#3" in recipe
    assert "Size: 96x48" in recipe


def test_a_pan_keeps_every_source_pixel_past_the_feather(
    random_backend: DiffusersBackend, source: Path
) -> None:
    result = edit(random_backend, source, "pan left", steps=2)
    with Image.open(source) as opened:
        original = _pixels(opened.convert("RGB"))
    feather = canvas_for(
        Image.new("RGB", (64, 48)), parse_edit("pan left"), multiple=8, max_side=None
    ).feather
    for image in result.images:
        assert np.array_equal(_pixels(image)[:, 32 + feather :], original[:, feather:])


def test_a_region_changes_nothing_outside_its_cells(random_backend: DiffusersBackend, source: Path) -> None:
    result = edit(random_backend, source, "region 5", steps=2)
    with Image.open(source) as opened:
        original = _pixels(opened.convert("RGB"))
    outside = np.ones((48, 64), dtype=bool)
    outside[16:32, 21:43] = False  # cell 5 of 64x48
    for image in result.images:
        assert np.array_equal(_pixels(image)[outside], original[outside])
        assert np.abs(_pixels(image)[~outside] - original[~outside]).mean() > 5


def test_progress_previews_and_cancel_work_for_an_edit(
    random_backend: DiffusersBackend, source: Path
) -> None:
    events: list[Progress] = []
    edit(random_backend, source, "pan up", steps=4, events=events)
    assert [(e.step, e.total) for e in events] == [(i, 4) for i in range(1, 5)]
    assert [e.step for e in events if e.preview is not None] == [PREVIEW_EVERY]
    cancelled = threading.Event()

    def on_progress(event: Progress) -> None:
        if event.step == 1:
            cancelled.set()

    request = GenerationRequest("x", mode=Mode.EDIT, init_image=source, edit="zoom 2", steps=6)
    with pytest.raises(JobCancelled):
        random_backend.generate(request, on_progress=on_progress, cancelled=cancelled)


def test_stop_ends_an_edit_early(random_backend: DiffusersBackend, source: Path) -> None:
    result = edit(random_backend, source, "square", steps=8, stop=50)
    assert result.steps == 4
    assert {image.size for image in result.images} == {(64, 64)}


def test_every_fill_goes_through_the_safety_check(random_backend: DiffusersBackend, source: Path) -> None:
    backend = DiffusersBackend.from_pipeline(
        random_backend.model.text2img,
        "tiny-random",
        tiny=True,
        safety_checker="tests.safety_checkers:flag_everything",
    )
    result = edit(backend, source, "zoom 1.5", steps=1)
    assert result.flagged == (True,) * 4
    assert result.checker == backend.checker


@pytest.mark.parametrize(
    ("spec", "max_side", "message"),
    [
        ("pan left", 64, r"already at the largest side this server makes \(64 px\)"),
        ("zoom 2", 56, r"Zoom 2x would make a 64×48 image, larger than .*\(56 px\)"),
        ("region 2", 32, r"\(32 px\)"),
        ("spin", None, "An edit is one of"),
    ],
)
def test_an_edit_that_cannot_be_made_is_refused_before_any_work(
    random_backend: DiffusersBackend, source: Path, spec: str, max_side: int | None, message: str
) -> None:
    events: list[Progress] = []
    with pytest.raises(GenerationError, match=message):
        edit(random_backend, source, spec, max_side=max_side, events=events)
    assert events == []


def test_a_pan_that_would_pass_the_largest_side_grows_only_up_to_it(
    random_backend: DiffusersBackend, source: Path
) -> None:
    result = edit(random_backend, source, "pan right", max_side=80, steps=1)
    assert result.images[0].size == (80, 48)


def test_an_edit_without_its_image_is_a_clear_error(random_backend: DiffusersBackend, tmp_path: Path) -> None:
    with pytest.raises(GenerationError, match="This edit needs the image it starts from"):
        run_job(random_backend, mode=Mode.EDIT, edit="zoom 2")
    with pytest.raises(GenerationError, match="can't be read"):
        edit(random_backend, tmp_path / "gone.png", "zoom 2")


class _NoInpainting(StableDiffusionPipeline):  # type: ignore[misc]
    """The boundary fake: a pipeline class diffusers' AutoPipeline has no inpainting twin for."""


def test_a_model_without_an_inpainting_pipeline_says_it_cannot_paint(source: Path) -> None:
    pipe = _NoInpainting(**build_random_pipeline().components)
    pipe.set_progress_bar_config(disable=True)
    backend = DiffusersBackend.from_pipeline(pipe, "odd-model", tiny=True)
    with pytest.raises(GenerationError) as caught:
        edit(backend, source, "zoom 2", steps=1)
    assert str(caught.value).startswith(CANNOT_PAINT)
    assert "odd-model" in str(caught.value)
    assert len(run_job(backend, steps=1).images) == 4  # everything else still works


def test_the_diffusers_backend_can_edit(random_backend: DiffusersBackend) -> None:
    assert random_backend.capabilities.edits is True


# --- upscales ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strength", "label", "ran"),
    [
        (0.0, "upscale", 6),
        (UPSCALE_SUBTLE, "upscale (subtle)", 3),
        (UPSCALE_CREATIVE, "upscale (creative)", 10),
    ],
)
def test_upscale_subtle_and_creative_set_the_strength_of_the_pass(
    random_backend: DiffusersBackend, source: Path, strength: float, label: str, ran: int
) -> None:
    result = run_job(
        random_backend,
        mode=Mode.UPSCALE,
        init_image=source,
        strength=strength,
        steps=20,
        parent="j#4",
        count=1,
    )
    assert result.images[0].size == (128, 96)
    assert result.extra["mode"] == label
    assert result.extra["parent"] == "j#4"
    assert result.steps == ran  # int(20 x strength) image-to-image steps; 0 = the default 0.3
    assert f"at strength {strength or 0.3:g}" in result.extra["notes"]


def test_an_upscale_past_the_largest_side_is_refused(random_backend: DiffusersBackend, source: Path) -> None:
    with pytest.raises(
        GenerationError, match=r"Upscaling this 64×48 image would make a 128×96 image.*\(100 px\)"
    ):
        run_job(random_backend, mode=Mode.UPSCALE, init_image=source, strength=UPSCALE_CREATIVE, max_side=100)
    assert run_job(random_backend, mode=Mode.UPSCALE, init_image=source, max_side=128, steps=2).images[
        0
    ].size == (
        128,
        96,
    )


def test_an_upscale_without_diffusion_still_respects_the_largest_side(source: Path) -> None:
    backend = DiffusersBackend.from_pipeline(
        build_random_pipeline(), "tiny-random", tiny=True, diffusion_upscale=False
    )
    with pytest.raises(GenerationError, match="larger than the largest side"):
        run_job(backend, mode=Mode.UPSCALE, init_image=source, max_side=64)
    result = run_job(backend, mode=Mode.UPSCALE, init_image=source, strength=UPSCALE_SUBTLE)
    assert (result.sampler, result.extra["mode"]) == ("lanczos", "upscale")
    assert "plain resampling" in result.extra["notes"]


# --- out of memory --------------------------------------------------------------------------------


class _OutOfMemoryInpainting(StableDiffusionInpaintPipeline):  # type: ignore[misc]
    """The boundary fake: the inpainting call runs out of CUDA memory above a batch size."""

    max_batch = 1
    calls: list[tuple[int, int]]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((len(kwargs["generator"]), len(kwargs["mask_image"])))
        if len(kwargs["generator"]) > self.max_batch:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().__call__(*args, **kwargs)


def test_out_of_memory_retries_an_edit_one_fill_at_a_time(
    random_backend: DiffusersBackend, source: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = DiffusersBackend.from_pipeline(random_backend.model.text2img, "tiny-random", tiny=True)
    pipe = _OutOfMemoryInpainting(**random_backend.model.inpaint.components)
    pipe.set_progress_bar_config(disable=True)
    pipe.calls = []
    backend.model.inpaint = pipe  # what the cached property would have derived, with the fake's limit
    with caplog.at_level(logging.WARNING):
        retried = edit(backend, source, "pan up", steps=2)
    assert pipe.calls == [(4, 4), (1, 1), (1, 1), (1, 1), (1, 1)]  # images, masks and generators split
    assert "one image at a time" in caplog.text
    together = edit(random_backend, source, "pan up", steps=2)
    for one, batched in zip(retried.images, together.images, strict=True):
        assert np.abs(_pixels(one) - _pixels(batched)).max() <= 2  # same seeds, same fills
