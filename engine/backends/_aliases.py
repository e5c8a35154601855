"""Which model runs a job: the default, or a `--v`/`--niji` alias loaded on first use.

Policy: one model works on the device at a time. While an alias model runs, the default model is
parked in CPU memory (on an accelerator; on a CPU-only machine nothing moves); asking for a third
model unloads the previous alias model rather than piling models up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from engine.backends._model import LoadedModel, free_device_memory
from engine.errors import GenerationError

__all__ = ["ModelSet"]

log = logging.getLogger(__name__)


class ModelSet:
    """The default model plus at most one alias model, with only the one in use on the device."""

    def __init__(
        self,
        default: LoadedModel,
        *,
        device: str,
        aliases: Mapping[str, str],
        loader: Callable[[str], LoadedModel],
    ) -> None:
        self.default = default
        self.alias: LoadedModel | None = None
        self._device = device
        self._aliases = dict(aliases)
        self._loader = loader
        self._on_device: LoadedModel | None = default

    def model_id_for(self, alias: str | None) -> str:
        """The model an alias names; an unknown alias is the job owner's error."""
        if alias is None or alias == self.default.model_id:
            return self.default.model_id
        if alias in self._aliases:
            return self._aliases[alias]
        if alias in self._aliases.values():
            return alias
        offered = ", ".join(sorted(self._aliases)) or "none; this server runs only its default model"
        raise GenerationError(f"This server has no model {alias!r}; the choices are: {offered}.")

    def get(self, alias: str | None) -> LoadedModel:
        """The model for `alias`, loaded if needed and moved onto the device."""
        model_id = self.model_id_for(alias)
        if model_id == self.default.model_id:
            return self._activate(self.default)
        if self.alias is None or self.alias.model_id != model_id:
            self._activate(None)
            if self.alias is not None:
                self.alias.close()
                self.alias = None
            log.info("loading model %s for alias %s", model_id, alias)
            self.alias = self._loader(model_id)  # loads straight onto the device
            self._on_device = self.alias
        return self._activate(self.alias)

    def _activate(self, model: LoadedModel | None) -> LoadedModel:
        """Make `model` the one on the device (None: clear the device for a model about to load)."""
        # Moving modules is only worth it on an accelerator; on a CPU both already live in RAM.
        if self._device != "cpu" and self._on_device is not model:
            if self._on_device is not None:
                self._on_device.to("cpu")
                free_device_memory()
            if model is not None:
                model.to(self._device)
        self._on_device = model
        return model if model is not None else self.default

    def close(self) -> None:
        """Unload every model."""
        if self.alias is not None:
            self.alias.close()
            self.alias = None
        self.default.close()
