"""Engines chosen by the model name: built-in schemes, a third-party engine from a real entry point,
diffusers for the rest, aliases routed to other engines, and one sentence for an unknown scheme."""

from __future__ import annotations

import importlib
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.backends import capabilities, known_schemes, load_backend, scheme_of
from engine.backends._registry import EngineRouter
from engine.errors import ModelLoadError
from engine.simulated import SimulatedBackend
from engine.types import GenerationRequest


@pytest.mark.parametrize(
    ("model", "scheme"),
    [
        ("simulated", "simulated"),
        ("simulated:seconds=0.1", "simulated"),
        ("openai:gpt-image-1", "openai"),
        ("gan-tiny", "gan"),
        ("gan:/models/my-gan", "gan"),
        ("tiny", None),
        ("stabilityai/sdxl-turbo", None),
        ("./models/sd15", None),
        ("C:\\models\\sd15", None),
        ("toy:anything", "toy"),
    ],
)
def test_the_scheme_before_the_first_colon_picks_the_engine(model: str, scheme: str | None) -> None:
    assert scheme_of(model) == scheme


def test_diffusers_models_honour_everything_and_paint_without_loading() -> None:
    for model in ("tiny", "stabilityai/sdxl-turbo", "/nowhere/at/all"):
        caps = capabilities(model)
        assert caps.engine == "diffusers"
        assert caps.edits
        assert not caps.hosted


def test_an_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(ModelLoadError) as error:
        capabilities("nosuch:model")
    message = str(error.value)
    assert "'nosuch'" in message
    for scheme in ("gan:", "openai:", "simulated:"):
        assert scheme in message


_TOY_MODULE = """
from engine.backend import Capabilities
from engine.simulated import SimulatedBackend


class ToyEngine:
    def capabilities(self, spec):
        return Capabilities(f"Toy {spec}", frozenset({"seed"}), edits=False, image_prompts=False)

    def load(self, spec, *, device, safety_checker):
        backend = SimulatedBackend(seconds=0, name=spec, edits=False)
        backend.capabilities = self.capabilities(spec)
        return backend


ENGINE = ToyEngine()
"""


@pytest.fixture
def toy_engine(tmp_path: Path) -> Iterator[str]:
    """An installed distribution `imaginebot-toy` (a dist-info with entry_points.txt) on sys.path whose
    `imaginebot.backends` entry point `toy` names a module of its own."""
    (tmp_path / "imaginebot_toy.py").write_text(_TOY_MODULE)
    info = tmp_path / "imaginebot_toy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: imaginebot-toy\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [imaginebot.backends]
            toy = imaginebot_toy:ENGINE
            broken = imaginebot_toy_missing:ENGINE
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        yield "toy"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("imaginebot_toy", None)
        importlib.invalidate_caches()


def test_a_third_party_engine_registers_through_the_entry_point_group(toy_engine: str) -> None:
    assert {"toy", "broken"} <= set(known_schemes())
    caps = capabilities("toy:little")
    assert caps.engine == "Toy toy:little"
    assert caps.honours == {"seed"}
    backend = load_backend("toy:little", device="cpu")
    result = backend.generate(
        GenerationRequest(prompt="x"), on_progress=lambda p: None, cancelled=threading.Event()
    )
    assert result.model == "toy:little"
    assert backend.capabilities.edits is False


def test_a_third_party_engine_that_fails_to_import_is_one_sentence(toy_engine: str) -> None:
    with pytest.raises(
        ModelLoadError, match=r"The 'broken' engine \(imaginebot_toy_missing:ENGINE\) failed to load"
    ):
        capabilities("broken:x")


def test_without_the_distribution_the_scheme_is_unknown() -> None:
    with pytest.raises(ModelLoadError, match="names the engine 'toy', which is not installed here"):
        capabilities("toy:little")


def test_aliases_on_other_engines_are_routed_and_loaded_on_first_use(toy_engine: str) -> None:
    backend = load_backend(
        "simulated:seconds=0", device="cpu", aliases={"toy": "toy:little", "sim": "simulated"}
    )
    assert isinstance(backend, EngineRouter)
    assert isinstance(backend.default, SimulatedBackend)
    assert backend.capabilities == backend.default.capabilities
    cancelled = threading.Event()
    default = backend.generate(GenerationRequest(prompt="x"), on_progress=lambda p: None, cancelled=cancelled)
    assert default.model == "simulated:seconds=0"
    assert backend.routes("toy") == "toy:little"
    routed = backend.generate(
        GenerationRequest(prompt="x", model="toy"), on_progress=lambda p: None, cancelled=cancelled
    )
    assert routed.model == "toy:little"
    other = backend.generate(
        GenerationRequest(prompt="x", model="sim"), on_progress=lambda p: None, cancelled=cancelled
    )
    assert other.model == "simulated"
    toy = backend.backend_for("toy")
    backend.close()
    assert isinstance(toy, SimulatedBackend)
    assert toy.closed
    assert backend.default.closed  # type: ignore[attr-defined]


def test_without_aliases_elsewhere_the_engines_own_backend_comes_back() -> None:
    assert isinstance(load_backend("simulated", device="cpu"), SimulatedBackend)
