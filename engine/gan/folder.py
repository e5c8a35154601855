"""The generator folder format: `config.json` (the network's shape and vocabulary) + `generator.safetensors`.

Weights are read with safetensors and put in with `load_state_dict`; pickled checkpoints (`.pt`,
`.pth`, `.bin`, `.ckpt`, `.pkl`) are never opened, because unpickling runs whatever code the file
carries. Every way a folder can be wrong ends in `ModelLoadError` with one sentence saying what to fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from engine.errors import ModelLoadError
from engine.gan.network import GanConfig, Generator

__all__ = ["CONFIG_FILE", "FORMAT", "PICKLE_SUFFIXES", "WEIGHTS_FILE", "load_generator", "save_generator"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "generator.safetensors"
FORMAT = "imaginebot-gan"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")
_FILES = f"{CONFIG_FILE} and {WEIGHTS_FILE}"


def save_generator(generator: Generator, folder: Path) -> None:
    """Write `generator` (its text encoder included) as a folder `load_generator` reads."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = {"format": FORMAT, "version": 1, **generator.config.to_json()}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")
    tensors = {name: value.detach().contiguous().cpu() for name, value in generator.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": FORMAT})


def load_generator(folder: Path, *, name: str) -> Generator:
    """The generator in `folder`, on the CPU in eval mode; `name` is how messages call the model."""
    if not folder.is_dir():
        raise ModelLoadError(f"{name}: {folder} is not a folder; give gan: the folder that holds {_FILES}.")
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise ModelLoadError(
                f"{name}: {pickles[0]} is a pickled checkpoint, which this bot never loads because "
                f"unpickling runs code; convert it to safetensors as {WEIGHTS_FILE} with "
                "safetensors.torch.save_file(generator.state_dict(), ...), as docs/gan-model.md shows."
            )
        raise ModelLoadError(f"{name}: {folder} has no {WEIGHTS_FILE}; a GAN folder holds {_FILES}.")
    config = _read_config(folder / CONFIG_FILE, name)
    state = _read_weights(weights, name)
    generator = Generator(config)
    _check_fit(generator, state, name)
    generator.load_state_dict(state)
    return generator.eval().requires_grad_(False)


def _read_config(path: Path, name: str) -> GanConfig:
    if not path.is_file():
        raise ModelLoadError(f"{name}: {path.parent} has no {CONFIG_FILE}; a GAN folder holds {_FILES}.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{name}: {path} is not readable JSON ({exc}).") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelLoadError(
            f'{name}: {path} must be a JSON object with "format": "{FORMAT}" (see docs/gan-model.md).'
        )
    try:
        return GanConfig.from_json(data)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(
            f"{name}: {path} is not a valid GAN config: {exc} (see docs/gan-model.md)."
        ) from None


def _read_weights(path: Path, name: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{name}: {path} is not a readable safetensors file ({exc}).") from None
    return {key: value.float() if value.is_floating_point() else value for key, value in state.items()}


def _check_fit(generator: Generator, state: dict[str, torch.Tensor], name: str) -> None:
    # One clear sentence rather than load_state_dict's list of every mismatch.
    expected = generator.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise ModelLoadError(
            f"{name}: {WEIGHTS_FILE} lacks {len(missing)} tensors the config's network needs "
            f"(first: {missing[0]!r}); the weights and {CONFIG_FILE} are not from the same generator."
        )
    if unexpected:
        raise ModelLoadError(
            f"{name}: {WEIGHTS_FILE} has {len(unexpected)} tensors the config's network lacks "
            f"(first: {unexpected[0]!r}); the weights and {CONFIG_FILE} are not from the same generator."
        )
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ModelLoadError(
                f"{name}: {WEIGHTS_FILE} holds {key!r} of shape {tuple(state[key].shape)}, but "
                f"{CONFIG_FILE} describes {tuple(tensor.shape)}; the two are not from the same generator."
            )
