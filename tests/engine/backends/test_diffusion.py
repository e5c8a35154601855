"""The diffusers backend on the tiny architecture, random weights: shapes, seeds, progress, cancel, OOM."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image

from engine.backends._mapping import size_for
from engine.backends._upscale import enlarge
from engine.backends.diffusion import PREVIEW_EVERY, DiffusersBackend
from engine.errors import GenerationError, JobCancelled, OutOfMemoryError
from engine.tiny import GUIDANCE, build_random_pipeline
from engine.types import GenerationRequest, Mode, Progress, WeightedPrompt
from tests.engine.backends.conftest import run_job


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize("ar", [(1, 1), (16, 9), (2, 3)])
def test_a_grid_is_four_images_at_the_aspect_ratio(
    random_backend: DiffusersBackend, ar: tuple[int, int]
) -> None:
    result = run_job(random_backend, aspect_ratio=ar, seed=41, steps=2)
    width, height = size_for(ar, random_backend.model.family)
    assert len(result.images) == 4
    assert {image.size for image in result.images} == {(width, height)}
    assert (result.width, result.height) == (width, height)
    assert result.seeds == (41, 42, 43, 44)
    assert (result.steps, result.cfg, result.sampler, result.model) == (2, GUIDANCE, "euler", "tiny-random")
    assert result.elapsed_s > 0


def test_any_cell_can_be_reproduced_alone_from_its_seed(random_backend: DiffusersBackend) -> None:
    grid = run_job(random_backend, seed=2**32 - 2, steps=3)
    assert grid.seeds == (2**32 - 2, 2**32 - 1, 0, 1)
    alone = run_job(random_backend, seed=grid.seeds[2], count=1, steps=3)
    assert alone.seeds == (0,)
    assert np.abs(_pixels(alone.images[0]) - _pixels(grid.images[2])).max() <= 2
    assert np.abs(_pixels(grid.images[1]) - _pixels(grid.images[2])).mean() > 10  # cells differ


def test_progress_counts_steps_and_carries_previews(random_backend: DiffusersBackend) -> None:
    events: list[Progress] = []
    run_job(random_backend, events=events, steps=6, aspect_ratio=(2, 1))
    assert [(e.step, e.total) for e in events] == [(i, 6) for i in range(1, 7)]
    with_preview = [e.step for e in events if e.preview is not None]
    assert with_preview == [s for s in range(1, 6) if s % PREVIEW_EVERY == 0]
    preview = events[1].preview
    assert preview is not None
    # a 2x2 grid of latent-resolution cells (88x48 px → 11x6 latents), scaled 4x
    assert preview.size == (2 * 11 * 4, 2 * 6 * 4)


def test_stop_ends_denoising_early_and_says_how_many_steps_ran(random_backend: DiffusersBackend) -> None:
    events: list[Progress] = []
    result = run_job(random_backend, events=events, steps=8, stop=50)
    assert result.steps == 4
    assert [(e.step, e.total) for e in events] == [(i, 4) for i in range(1, 5)]
    assert len(result.images) == 4


def test_cancel_mid_run_stops_at_the_next_step(random_backend: DiffusersBackend) -> None:
    cancelled = threading.Event()
    steps: list[int] = []

    def on_progress(event: Progress) -> None:
        steps.append(event.step)
        if event.step == 2:
            cancelled.set()

    with pytest.raises(JobCancelled):
        random_backend.generate(
            GenerationRequest("a cat", steps=20), on_progress=on_progress, cancelled=cancelled
        )
    assert steps == [1, 2]
    assert len(run_job(random_backend, steps=1).images) == 4  # still usable


def test_a_job_cancelled_before_it_starts_never_runs(random_backend: DiffusersBackend) -> None:
    cancelled = threading.Event()
    cancelled.set()
    events: list[Progress] = []
    with pytest.raises(JobCancelled):
        random_backend.generate(GenerationRequest("a cat"), on_progress=events.append, cancelled=cancelled)
    assert events == []


def test_sampler_is_used_for_one_job_only(random_backend: DiffusersBackend) -> None:
    assert run_job(random_backend, sampler="dpmpp_2m", steps=2).sampler == "dpmpp_2m"
    heun = run_job(random_backend, sampler="heun", steps=3)
    assert (heun.sampler, heun.steps) == ("heun", 3)  # second-order: 5 iterations, 3 steps
    assert run_job(random_backend, steps=2).sampler == "euler"


def test_tile_makes_convolutions_circular_for_that_job_only(random_backend: DiffusersBackend) -> None:
    unet = random_backend.model.text2img.unet
    vae = random_backend.model.text2img.vae
    modes: set[str] = set()

    def look(_: Progress) -> None:
        modes.update(
            m.padding_mode for model in (unet, vae) for m in model.modules() if isinstance(m, torch.nn.Conv2d)
        )

    random_backend.generate(
        GenerationRequest("a cat", steps=1, tile=True), on_progress=look, cancelled=threading.Event()
    )
    assert modes == {"circular"}
    assert {m.padding_mode for m in unet.modules() if isinstance(m, torch.nn.Conv2d)} == {"zeros"}


def test_variation_makes_four_new_images_of_the_source_size(
    random_backend: DiffusersBackend, tmp_path: Path
) -> None:
    source = tmp_path / "cell.png"
    run_job(random_backend, aspect_ratio=(3, 2), seed=5, steps=2).images[0].save(source)
    result = run_job(random_backend, mode=Mode.VARIATION, init_image=source, strength=0.6, seed=77, steps=5)
    assert len(result.images) == 4
    with Image.open(source) as opened:
        assert {image.size for image in result.images} == {opened.size}
    assert result.seeds == (77, 78, 79, 80)
    assert result.steps == 3  # int(5 x 0.6) image-to-image steps actually run
    assert result.extra["strength"] == "0.6"


def test_an_image_prompt_is_a_grid_at_the_aspect_ratio_that_starts_from_the_picture(
    random_backend: DiffusersBackend, tmp_path: Path
) -> None:
    source = tmp_path / "start.png"
    Image.effect_noise((90, 60), 60).convert("RGB").save(source)  # not the grid's size: fitted by the engine
    result = run_job(
        random_backend,
        mode=Mode.IMAGE,
        init_image=source,
        image_weight=2.0,
        sources=("ab" * 32,),
        aspect_ratio=(3, 2),
        seed=3,
        steps=8,
    )
    assert len(result.images) == 4
    assert {image.size for image in result.images} == {(80, 56)}  # 3:2 at the native area
    assert result.steps == 3  # int(8 x 0.45): --iw 2 keeps more of the picture, so fewer steps run
    assert result.extra["strength"] == "0.45"
    assert "image-to-image from the picture at strength 0.45 for --iw 2" in result.extra["notes"]


def test_an_image_prompt_without_its_picture_is_a_clear_error(
    random_backend: DiffusersBackend, tmp_path: Path
) -> None:
    with pytest.raises(GenerationError, match="image prompt starts from"):
        run_job(random_backend, mode=Mode.IMAGE, init_image=tmp_path / "gone.png")


def test_upscale_doubles_one_image(random_backend: DiffusersBackend, tmp_path: Path) -> None:
    source = tmp_path / "cell.png"
    run_job(random_backend, seed=5, steps=2).images[3].save(source)
    result = run_job(random_backend, mode=Mode.UPSCALE, init_image=source, seed=9)
    assert len(result.images) == 1
    assert result.images[0].size == (128, 128)
    assert result.seeds == (9,)
    assert "tile" in result.extra["notes"]


def test_upscale_without_diffusion_is_plain_resampling(tmp_path: Path) -> None:
    backend = DiffusersBackend.from_pipeline(
        build_random_pipeline(), "tiny-random", tiny=True, diffusion_upscale=False
    )
    source = tmp_path / "cell.png"
    Image.effect_noise((64, 48), 60).convert("RGB").save(source)
    result = run_job(backend, mode=Mode.UPSCALE, init_image=source)
    with Image.open(source) as opened:
        assert result.images[0].tobytes() == enlarge(opened).tobytes()
    assert (result.steps, result.sampler) == (0, "lanczos")


def test_a_missing_source_image_is_a_clear_error(random_backend: DiffusersBackend, tmp_path: Path) -> None:
    with pytest.raises(GenerationError, match="can't be read"):
        run_job(random_backend, mode=Mode.VARIATION, init_image=tmp_path / "gone.png", strength=0.6)
    with pytest.raises(GenerationError, match="names none"):
        run_job(random_backend, mode=Mode.UPSCALE)


def test_an_unknown_model_alias_is_refused(random_backend: DiffusersBackend) -> None:
    with pytest.raises(GenerationError, match="no model 'niji'"):
        run_job(random_backend, model="niji")


class _OutOfMemoryPipeline(StableDiffusionPipeline):  # type: ignore[misc]
    """The boundary fake: the torch pipeline call runs out of CUDA memory above a batch size."""

    max_batch = 1
    calls: list[int]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        batch = len(kwargs["generator"])
        self.calls.append(batch)
        if batch > self.max_batch:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().__call__(*args, **kwargs)


def _oom_backend(max_batch: int) -> tuple[DiffusersBackend, _OutOfMemoryPipeline]:
    pipe = _OutOfMemoryPipeline(**build_random_pipeline().components)
    pipe.set_progress_bar_config(disable=True)
    pipe.max_batch = max_batch
    pipe.calls = []
    return DiffusersBackend.from_pipeline(pipe, "tiny-random", tiny=True), pipe


def test_out_of_memory_retries_one_image_at_a_time(
    random_backend: DiffusersBackend, caplog: pytest.LogCaptureFixture
) -> None:
    backend, pipe = _oom_backend(max_batch=1)
    with caplog.at_level(logging.WARNING):
        result = run_job(backend, seed=11, steps=2)
    assert pipe.calls == [4, 1, 1, 1, 1]
    assert "one image at a time" in caplog.text
    batched = run_job(random_backend, seed=11, steps=2)
    for retried, together in zip(result.images, batched.images, strict=True):
        assert np.abs(_pixels(retried) - _pixels(together)).max() <= 2  # same seeds, same pictures


def test_out_of_memory_twice_fails_the_job_and_the_backend_lives_on() -> None:
    backend, pipe = _oom_backend(max_batch=0)
    with pytest.raises(OutOfMemoryError, match="one image at a time"):
        run_job(backend, steps=2)
    assert pipe.calls == [4, 1]
    pipe.max_batch = 4
    assert len(run_job(backend, steps=1).images) == 4


def test_half_precision_as_on_a_gpu_runs_every_mode(tmp_path: Path) -> None:
    # CUDA runs fp16; CPU torch can too, which catches dtype mix-ups (float32 scheduler estimates,
    # chaos noise, previews) without a GPU.
    backend = DiffusersBackend.from_pipeline(
        build_random_pipeline().to(torch.float16), "tiny-fp16", tiny=True
    )
    events: list[Progress] = []
    weighted = (WeightedPrompt("a red circle", 2.0), WeightedPrompt("square", 1.0))
    grid = run_job(
        backend, events=events, steps=4, chaos=50, negative_prompt="blue", weighted_prompts=weighted
    )
    assert any(e.preview is not None for e in events)
    assert run_job(backend, steps=4, stop=50).steps == 2
    grid.images[0].save(source := tmp_path / "cell.png")
    assert len(run_job(backend, mode=Mode.VARIATION, init_image=source, strength=0.6, tile=True).images) == 4
    assert run_job(backend, mode=Mode.UPSCALE, init_image=source).images[0].size == (128, 128)
    assert run_job(backend, mode=Mode.EDIT, init_image=source, edit="pan left", stop=50).images[0].size == (
        96,
        64,
    )


def test_a_large_upscale_runs_in_blended_tiles(random_backend: DiffusersBackend, tmp_path: Path) -> None:
    Image.effect_noise((128, 96), 60).convert("RGB").save(source := tmp_path / "big.png")
    result = run_job(random_backend, mode=Mode.UPSCALE, init_image=source, seed=3, steps=2)
    assert result.images[0].size == (256, 192)
    assert "over 6 tile(s)" in result.extra["notes"]  # tiles of 128 px (2x native) overlapping 16 px
