"""The GAN engine's names and its folder format: what loads, and the one clear sentence for what does not.

A user's folder is made here from a small generator with random weights, saved as the docs say
(config.json + generator.safetensors); the pickled checkpoint is a real `torch.save` file.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.errors import ModelLoadError
from engine.gan import ENGINE
from engine.gan.folder import CONFIG_FILE, WEIGHTS_FILE, load_generator, save_generator
from engine.gan.network import GanConfig, Generator, tokenize, z_map_size
from engine.types import GenerationRequest

SMALL = GanConfig(
    vocabulary=("red", "blue", "circle", "on"), word_dim=8, text_dim=16, z_channels=4, channels=(16, 8, 8)
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    out = tmp_path / "my-gan"
    save_generator(Generator(SMALL), out)
    return out


def load(spec: str) -> object:
    return ENGINE.load(spec, device="cpu", safety_checker="model")


def test_capabilities_name_the_engine_and_honour_aspect_and_seed_only() -> None:
    tiny = ENGINE.capabilities("gan-tiny")
    assert tiny.engine == "GAN gan-tiny"
    assert tiny.honours == {"aspect", "seed"}
    assert (tiny.edits, tiny.image_prompts) == (False, False)
    assert ENGINE.capabilities("gan:/models/my-gan").engine == "GAN my-gan"


def test_a_user_folder_loads_and_draws_at_its_own_native_size(folder: Path) -> None:
    backend = load(f"gan:{folder}")
    assert backend.capabilities.engine == "GAN my-gan"  # type: ignore[attr-defined]
    assert backend.checker is None  # type: ignore[attr-defined]  # `model`: the GAN ships no checker
    result = backend.generate(  # type: ignore[attr-defined]
        GenerationRequest("a red circle on blue", seed=3, count=2, aspect_ratio=(2, 1)),
        on_progress=lambda _: None,
        cancelled=threading.Event(),
    )
    # Two doublings from a 4×8 z-map.
    assert (result.width, result.height) == (32, 16)
    assert [image.size for image in result.images] == [(32, 16), (32, 16)]


def test_the_saved_weights_are_what_loads(folder: Path) -> None:
    generator = load_generator(folder, name="test")
    saved = load_file(str(folder / WEIGHTS_FILE))
    for key, tensor in generator.state_dict().items():
        assert torch.equal(tensor, saved[key]), key


def test_a_missing_folder_or_file_says_which(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="is not a folder"):
        load(f"gan:{tmp_path / 'nowhere'}")
    (folder / CONFIG_FILE).unlink()
    with pytest.raises(ModelLoadError, match=f"has no {CONFIG_FILE}"):
        load(f"gan:{folder}")
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelLoadError, match=f"has no {WEIGHTS_FILE}"):
        load(f"gan:{folder}")


@pytest.mark.parametrize("name", ["generator.pt", "model.ckpt", "pytorch_model.bin", "g.pth"])
def test_a_pickled_checkpoint_is_refused_unopened(folder: Path, name: str) -> None:
    (folder / WEIGHTS_FILE).unlink()
    torch.save(Generator(SMALL).state_dict(), folder / name)
    with pytest.raises(ModelLoadError) as caught:
        load(f"gan:{folder}")
    message = str(caught.value)
    assert name in message
    assert "convert it to safetensors" in message
    assert message.count(". ") == 0  # one sentence


def test_a_pickle_beside_the_safetensors_is_never_opened(folder: Path) -> None:
    # A file named like a checkpoint that would fail to unpickle: loading still works from the safetensors.
    (folder / "generator.pt").write_bytes(b"not a pickle at all")
    load(f"gan:{folder}")


def test_weights_of_another_shape_are_refused_naming_the_tensor(folder: Path) -> None:
    state = load_file(str(folder / WEIGHTS_FILE))
    state["stem.weight"] = torch.zeros(3, 3, 3, 3)
    save_file(state, str(folder / WEIGHTS_FILE))
    with pytest.raises(ModelLoadError, match=r"'stem.weight' of shape \(3, 3, 3, 3\)"):
        load(f"gan:{folder}")


def test_weights_of_another_config_are_refused(folder: Path) -> None:
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["channels"] = [16, 8, 8, 8]  # one more block than the weights have
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"lacks \d+ tensors"):
        load(f"gan:{folder}")


def test_a_corrupt_weights_file_is_refused(folder: Path) -> None:
    (folder / WEIGHTS_FILE).write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="not a readable safetensors file"):
        load(f"gan:{folder}")


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"format": "something-else"}, '"format": "imaginebot-gan"'),
        ({"channels": [16]}, "at least two"),
        ({"z_channels": 0}, "`z_channels` must be a positive whole number"),
        ({"vocabulary": "red blue"}, "`vocabulary` must be a list of words"),
        ({"channels": [16, 12, 8]}, "multiple of `groups`"),
        ({"colour": "red"}, "unknown key 'colour'"),
    ],
)
def test_a_bad_config_says_what_is_wrong(folder: Path, change: dict[str, object], complaint: str) -> None:
    config = json.loads((folder / CONFIG_FILE).read_text())
    config.update(change)
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ModelLoadError) as caught:
        load(f"gan:{folder}")
    assert complaint in str(caught.value)


def test_config_that_is_not_json_is_refused(folder: Path) -> None:
    (folder / CONFIG_FILE).write_text("{channels: [16, 8]")
    with pytest.raises(ModelLoadError, match="not readable JSON"):
        load(f"gan:{folder}")


@pytest.mark.parametrize("spec", ["gan:", "gan:   ", "gan-small", "gans:/x"])
def test_a_name_that_is_not_a_gan_model_says_how_to_name_one(spec: str) -> None:
    with pytest.raises(ModelLoadError, match=r"use gan-tiny \(built in\) or gan:/path/to/folder"):
        ENGINE.capabilities(spec)


def test_words_map_to_their_ids_and_unknown_words_to_one_id() -> None:
    ids, lengths = tokenize(["A red circle, on BLUE!", "lighthouse", ""], SMALL)
    assert lengths.tolist() == [5, 1, 1]
    assert ids[0].tolist() == [1, 2, 4, 5, 3]  # `a` is not in this vocabulary
    assert ids[1, 0] == ids[2, 0] == 1


@pytest.mark.parametrize(
    ("aspect", "z"),
    [((1, 1), (4, 4)), ((3, 2), (4, 6)), ((2, 3), (6, 4)), ((16, 9), (4, 7)), ((1, 2), (8, 4))],
)
def test_the_z_map_keeps_the_short_side_and_stretches_the_long_one(
    aspect: tuple[int, int], z: tuple[int, int]
) -> None:
    assert z_map_size(aspect, SMALL) == z
