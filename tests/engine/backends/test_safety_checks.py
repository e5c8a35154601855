"""The diffusers backend's safety check: the start picture of an image prompt before, every image after."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.backends._model import LoadedModel
from engine.backends.diffusion import DiffusersBackend
from engine.errors import ImageFlagged, ModelLoadError
from engine.types import Mode
from tests.engine.backends.conftest import run_job
from tests.engine.test_safety import pipeline_with_checker
from tests.safety_checkers import RedChecker

FLAG_RED = "tests.safety_checkers:flag_red"


def backend_with(random_backend: DiffusersBackend, setting: str) -> DiffusersBackend:
    """The session's random pipeline behind a backend of its own with `setting` as its safety checker."""
    return DiffusersBackend.from_pipeline(
        random_backend.model.text2img, "tiny-random", tiny=True, safety_checker=setting
    )


def picture(tmp_path: Path, colour: tuple[int, int, int]) -> Path:
    path = tmp_path / f"start-{colour[0]}-{colour[2]}.png"
    Image.new("RGB", (96, 64), colour).save(path)
    return path


def counts(backend: DiffusersBackend) -> list[int]:
    """How many images the backend's test checker was shown, call by call."""
    checker = backend.model.safety_checker
    assert isinstance(checker, RedChecker)
    return checker.calls


def test_without_a_checker_nothing_is_checked(random_backend: DiffusersBackend) -> None:
    result = run_job(random_backend, steps=2)
    assert (result.flagged, result.checker, random_backend.checker) == ((), None, None)


@pytest.mark.parametrize(
    ("setting", "flagged"),
    [("tests.safety_checkers:flag_everything", True), ("tests.safety_checkers:flag_nothing", False)],
)
def test_every_image_of_a_grid_is_checked(
    random_backend: DiffusersBackend, setting: str, flagged: bool
) -> None:
    backend = backend_with(random_backend, setting)
    result = run_job(backend, steps=2)
    assert result.flagged == (flagged,) * 4
    assert result.checker == backend.checker
    assert result.checker is not None
    assert result.checker.endswith("-test")
    assert counts(backend) == [4]


def test_a_flagged_start_picture_makes_nothing(random_backend: DiffusersBackend, tmp_path: Path) -> None:
    backend = backend_with(random_backend, FLAG_RED)
    with pytest.raises(ImageFlagged, match=r"^Your picture was flagged by this server's safety check"):
        run_job(backend, mode=Mode.IMAGE, init_image=picture(tmp_path, (250, 0, 0)), steps=2)
    assert counts(backend) == [1], "only the picture was checked: no grid was made"


def test_a_flagged_start_picture_is_used_where_it_is_allowed(
    random_backend: DiffusersBackend, tmp_path: Path
) -> None:
    backend = backend_with(random_backend, FLAG_RED)
    start = picture(tmp_path, (250, 0, 0))
    result = run_job(backend, mode=Mode.IMAGE, init_image=start, allow_flagged_input=True, steps=2)
    assert len(result.images) == 4
    assert len(result.flagged) == 4
    assert counts(backend) == [4], "the output is checked whatever the start picture was"


def test_a_clean_start_picture_is_checked_then_the_grid(
    random_backend: DiffusersBackend, tmp_path: Path
) -> None:
    backend = backend_with(random_backend, FLAG_RED)
    result = run_job(backend, mode=Mode.IMAGE, init_image=picture(tmp_path, (0, 0, 250)), steps=2)
    assert len(result.flagged) == 4
    assert counts(backend) == [1, 4]


def test_variations_and_upscales_are_checked(random_backend: DiffusersBackend, tmp_path: Path) -> None:
    backend = backend_with(random_backend, "tests.safety_checkers:flag_everything")
    backend.diffusion_upscale = False
    source = picture(tmp_path, (0, 0, 250))
    variation = run_job(backend, mode=Mode.VARIATION, init_image=source, strength=0.5, steps=2)
    upscale = run_job(backend, mode=Mode.UPSCALE, init_image=source, count=1)
    assert (variation.flagged, upscale.flagged) == ((True,) * 4, (True,))


def test_the_models_own_checker_flags_and_the_pipeline_blacks_out_nothing() -> None:
    backend = DiffusersBackend.from_pipeline(
        pipeline_with_checker(flags_everything=True), "sd-like", tiny=True
    )
    result = run_job(backend, steps=2)
    assert result.flagged == (True,) * 4
    assert backend.checker == result.checker == "StableDiffusionSafetyChecker (the model's own)"
    # Left in the pipeline, the checker would have replaced each flagged image with a black one.
    assert all(np.asarray(image).max() > 0 for image in result.images)


def test_none_turns_even_the_models_own_checker_off() -> None:
    pipe = pipeline_with_checker(flags_everything=True)
    backend = DiffusersBackend.from_pipeline(pipe, "sd-like", tiny=True, safety_checker="none")
    result = run_job(backend, steps=2)
    assert (result.flagged, result.checker, backend.checker) == ((), None, None)
    assert all(np.asarray(image).max() > 0 for image in result.images)


def test_a_custom_checker_is_made_once_for_every_model(random_backend: DiffusersBackend) -> None:
    loads: list[str] = []

    def loader(model_id: str) -> LoadedModel:
        loads.append(model_id)
        return LoadedModel(pipeline_with_checker(), model_id, tiny=True)

    backend = DiffusersBackend.from_pipeline(
        random_backend.model.text2img,
        "tiny-random",
        tiny=True,
        aliases={"niji": "sd-like"},
        loader=loader,
        safety_checker=FLAG_RED,
    )
    run_job(backend, model="niji", steps=2)
    assert loads == ["sd-like"]
    assert backend._models.alias is not None
    assert backend._models.alias.safety_checker is backend.model.safety_checker
    assert backend._models.alias.text2img.safety_checker is None  # its own left the pipeline


def test_a_bad_checker_setting_fails_the_backend_at_start(random_backend: DiffusersBackend) -> None:
    with pytest.raises(ModelLoadError, match="IMAGINE_SAFETY_CHECKER"):
        backend_with(random_backend, "tests.safety_checkers:nope")
