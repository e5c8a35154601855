"""Loading models: local folders, the offline hub, devices, and pipelines that share one set of weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from engine.backends import load_backend
from engine.backends._family import FamilyKind, detect_family
from engine.backends._model import LoadedModel, load_model, resolve_device
from engine.backends.diffusion import DiffusersBackend
from engine.errors import ModelLoadError
from engine.tiny import build_random_pipeline
from tests.engine.backends.conftest import run_job


def test_a_hub_model_that_is_not_here_fails_offline_with_one_sentence() -> None:
    with pytest.raises(ModelLoadError) as info:
        load_backend("nobody-here/no-such-model", device="cpu")
    message = str(info.value)
    assert "'nobody-here/no-such-model' is not on this machine" in message
    assert "hf download nobody-here/no-such-model" in message
    assert "IMAGINE_MODEL" in message
    assert message.count(". ") == 0  # one sentence
    assert message.endswith(".")


def test_a_missing_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "nowhere"), device="cpu")


def test_a_folder_that_is_not_a_diffusers_folder_says_so(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"model_index\.json"):
        load_model(str(tmp_path), device="cpu")


def test_cuda_asked_for_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelLoadError, match="IMAGINE_DEVICE"):
        resolve_device("cuda")


def test_auto_device_falls_back_to_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"


def test_a_local_folder_loads_in_fp32_on_cpu(tmp_path: Path) -> None:
    build_random_pipeline().save_pretrained(tmp_path / "model")
    model = load_model(str(tmp_path / "model"), device="cpu")
    assert type(model.text2img).__name__ == "StableDiffusionPipeline"
    assert model.text2img.unet.dtype == torch.float32
    assert model.family.kind is FamilyKind.SD
    assert model.family.native_size == 64


def _pointers(pipe: Any) -> set[int]:
    return {p.data_ptr() for module in (pipe.unet, pipe.vae, pipe.text_encoder) for p in module.parameters()}


def test_img2img_and_inpaint_share_the_text2img_weights() -> None:
    model = LoadedModel(build_random_pipeline(), "tiny-random", tiny=True)
    text2img = _pointers(model.text2img)
    assert type(model.img2img).__name__ == "StableDiffusionImg2ImgPipeline"
    assert type(model.inpaint).__name__ == "StableDiffusionInpaintPipeline"
    assert _pointers(model.img2img) == text2img
    assert _pointers(model.inpaint) == text2img
    assert model.img2img.unet is model.text2img.unet


@pytest.mark.parametrize(
    ("name", "kind", "turbo", "steps"),
    [
        ("tiny", FamilyKind.TINY, False, 20),
        ("stabilityai/sd-turbo", FamilyKind.SD, True, 2),
        ("x/sd15", FamilyKind.SD, False, 30),
    ],
)
def test_family_detection(name: str, kind: FamilyKind, turbo: bool, steps: int) -> None:
    family = detect_family(build_random_pipeline(), name, tiny=name == "tiny")
    assert (family.kind, family.turbo, family.default_steps, family.native_size) == (kind, turbo, steps, 64)


def test_a_model_alias_loads_on_first_use_and_the_default_stays(tmp_path: Path) -> None:
    other = tmp_path / "other"
    build_random_pipeline(seed=1).save_pretrained(other)
    backend = DiffusersBackend.from_pipeline(
        build_random_pipeline(), "tiny-random", tiny=True, aliases={"niji": str(other)}
    )
    niji = run_job(backend, model="niji", seed=3, steps=1)
    default = run_job(backend, seed=3, steps=1)
    assert (niji.model, default.model) == (str(other), "tiny-random")
    assert niji.images[0].tobytes() != default.images[0].tobytes()  # other weights really ran
    assert run_job(backend, model="niji", seed=3, steps=1).images[0].tobytes() == niji.images[0].tobytes()
