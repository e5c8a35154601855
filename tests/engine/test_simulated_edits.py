"""The simulated backend's edits and upscales: the canvas sizes, recipe fields and refusals the diffusers
backend gives, so bot tests of the editing tools run without a model."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine.backend import Backend
from engine.edits import CANNOT_PAINT
from engine.errors import GenerationError
from engine.simulated import SimulatedBackend
from engine.types import UPSCALE_CREATIVE, UPSCALE_SUBTLE, GenerationRequest, GenerationResult, Mode


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "upscale.png"
    Image.effect_noise((64, 48), 60).convert("RGB").save(path)
    return path


def run(backend: SimulatedBackend, **fields: Any) -> GenerationResult:
    request = GenerationRequest("a kite", **fields)
    return backend.generate(request, on_progress=lambda _: None, cancelled=threading.Event())


@pytest.mark.parametrize(
    ("spec", "size", "label"),
    [("zoom 2", (64, 48), "zoom 2x"), ("pan up", (64, 72), "pan up"), ("square", (64, 64), "make square")],
)
def test_an_edit_comes_out_at_its_canvas_size_with_the_source_kept(
    source: Path, spec: str, size: tuple[int, int], label: str
) -> None:
    result = run(SimulatedBackend(seconds=0), mode=Mode.EDIT, init_image=source, edit=spec, parent="j#1")
    assert {image.size for image in result.images} == {size}
    assert (result.width, result.height, len(result.images)) == (*size, 4)
    assert result.extra == {"mode": label, "parent": "j#1"}
    if spec == "pan up":
        with Image.open(source) as opened:
            kept = np.asarray(opened.convert("RGB"))[8:]  # past the feather
        assert np.array_equal(np.asarray(result.images[0])[32:], kept)


def test_upscales_name_their_kind_and_refuse_to_pass_the_largest_side(source: Path) -> None:
    backend = SimulatedBackend(seconds=0)
    subtle = run(backend, mode=Mode.UPSCALE, init_image=source, strength=UPSCALE_SUBTLE, count=1)
    creative = run(backend, mode=Mode.UPSCALE, init_image=source, strength=UPSCALE_CREATIVE, count=1)
    plain = run(backend, mode=Mode.UPSCALE, init_image=source, count=1)
    assert [r.extra["mode"] for r in (subtle, creative, plain)] == [
        "upscale (subtle)",
        "upscale (creative)",
        "upscale",
    ]
    assert subtle.images[0].size == (64, 64)  # the simulated backend's images are 64 px on the long side
    with pytest.raises(GenerationError, match=r"64×64 image, larger than .*\(32 px\)"):
        run(backend, mode=Mode.UPSCALE, init_image=source, strength=UPSCALE_SUBTLE, max_side=32)


def test_a_backend_that_cannot_paint_refuses_an_edit_and_says_so(source: Path) -> None:
    backend = SimulatedBackend(seconds=0, edits=False)
    assert isinstance(backend, Backend)
    assert backend.capabilities.edits is False
    with pytest.raises(GenerationError, match="cannot paint new areas") as caught:
        run(backend, mode=Mode.EDIT, init_image=source, edit="zoom 2")
    assert str(caught.value) == CANNOT_PAINT
    assert len(run(backend).images) == 4  # the rest works
    assert SimulatedBackend().capabilities.edits is True


def test_a_bad_or_oversized_edit_fails_like_the_real_backend(source: Path) -> None:
    backend = SimulatedBackend(seconds=0)
    with pytest.raises(GenerationError, match="already at the largest side"):
        run(backend, mode=Mode.EDIT, init_image=source, edit="pan left", max_side=64)
    with pytest.raises(GenerationError, match="An edit is one of"):
        run(backend, mode=Mode.EDIT, init_image=source, edit="twirl")
    with pytest.raises(GenerationError, match="needs the image it starts from"):
        run(backend, mode=Mode.EDIT, edit="zoom 2")
