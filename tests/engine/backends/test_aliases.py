"""Model aliases: one model on the device at a time, the default parked in CPU memory meanwhile."""

from __future__ import annotations

from typing import Any

import pytest
from diffusers import StableDiffusionPipeline

from engine.backends._aliases import ModelSet
from engine.backends._model import LoadedModel
from engine.errors import GenerationError, ModelLoadError
from engine.tiny import build_random_pipeline

ACCELERATOR = "cpu:0"
"""Any device other than "cpu" counts as an accelerator; "cpu:0" lets the moves really happen here."""


class _Recording(StableDiffusionPipeline):  # type: ignore[misc]
    """Records where the pipeline is moved (the torch boundary)."""

    moves: list[str]

    def to(self, *args: Any, **kwargs: Any) -> Any:
        self.moves.append(str(args[0]))
        return super().to(*args, **kwargs)


def _model(name: str) -> LoadedModel:
    pipe = _Recording(**build_random_pipeline().components)
    pipe.moves = []
    return LoadedModel(pipe, name, tiny=True)


def test_an_alias_parks_the_default_and_comes_back() -> None:
    default = _model("base")
    loaded: list[str] = []

    def loader(model_id: str) -> LoadedModel:
        loaded.append(model_id)
        return _model(model_id)

    models = ModelSet(default, device=ACCELERATOR, aliases={"niji": "anime", "6": "v6"}, loader=loader)
    niji = models.get("niji")
    assert (niji.model_id, loaded, default.text2img.moves) == ("anime", ["anime"], ["cpu"])
    assert models.get("niji") is niji  # already there: nothing loads or moves
    assert (loaded, default.text2img.moves, niji.text2img.moves) == (["anime"], ["cpu"], [])
    assert models.get(None) is default
    assert (default.text2img.moves, niji.text2img.moves) == (["cpu", ACCELERATOR], ["cpu"])
    assert models.get("niji") is niji  # parked, not reloaded
    assert loaded == ["anime"]
    assert models.get("6").model_id == "v6"  # a third model replaces the previous alias
    assert models.alias is not None
    assert models.alias.model_id == "v6"
    assert niji.text2img is None  # closed


def test_a_failed_alias_load_leaves_the_default_usable() -> None:
    default = _model("base")

    def loader(model_id: str) -> LoadedModel:
        raise ModelLoadError(f"Model {model_id!r} is not on this machine.")

    models = ModelSet(default, device=ACCELERATOR, aliases={"niji": "anime"}, loader=loader)
    with pytest.raises(ModelLoadError):
        models.get("niji")
    assert models.get(None) is default
    assert default.text2img.moves == ["cpu", ACCELERATOR]


def test_aliases_are_resolved_by_name_or_model_id() -> None:
    models = ModelSet(_model("base"), device="cpu", aliases={"niji": "anime"}, loader=_model)
    assert models.model_id_for(None) == "base"
    assert models.model_id_for("base") == "base"
    assert models.model_id_for("niji") == "anime"
    assert models.model_id_for("anime") == "anime"
    with pytest.raises(GenerationError, match="the choices are: niji"):
        models.model_id_for("7")
