"""Which engine serves a model name: the scheme before the first colon picks it.

`simulated[:…]`, `openai:<model>` and `gan:<folder>` (with `gan-tiny` its built-in model) are built in;
third-party engines register in the `imaginebot.backends` entry-point group under their scheme; every
other name (a hub id, a local folder, `tiny`) is a diffusers model. An engine is loaded by import only
when a model of its scheme is asked for, so a missing optional package bothers no one else.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import threading
from collections.abc import Mapping
from typing import Any, cast

from engine.backend import Backend, Capabilities, Engine, ProgressCallback
from engine.backends._diffusers import DiffusersEngine
from engine.errors import ModelLoadError
from engine.types import GenerationRequest, GenerationResult

__all__ = ["ENTRY_POINT_GROUP", "EngineRouter", "capabilities", "engine_for", "known_schemes", "scheme_of"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "imaginebot.backends"
"""Third-party engines: `[project.entry-points."imaginebot.backends"] myscheme = "pkg.module:ENGINE"`."""

BUILT_IN: Mapping[str, str] = {
    "simulated": "engine.simulated:ENGINE",
    "openai": "engine.backends.hosted:ENGINE",
    "gan": "engine.gan:ENGINE",
}
"""Built-in schemes → the `Engine` object serving them, as `module:attribute` (imported on use)."""

BARE_NAMES: Mapping[str, str] = {"simulated": "simulated", "gan-tiny": "gan"}
"""Model names without a colon that still belong to an engine other than diffusers."""

DIFFUSERS = DiffusersEngine()


def _third_party() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def known_schemes() -> list[str]:
    """Every scheme a model name may start with here, built in or installed."""
    return sorted({*BUILT_IN, *_third_party()})


def scheme_of(model: str) -> str | None:
    """The engine scheme of `model`, or None for a diffusers model (hub id, folder, `tiny`)."""
    if model in BARE_NAMES:
        return BARE_NAMES[model]
    scheme, colon, _ = model.partition(":")
    if not colon or ("/" in scheme or "\\" in scheme) or len(scheme) == 1:
        return None  # `org/model`, `./folder`, `C:\\models\\x`: diffusers
    return scheme


def _import(target: str, scheme: str) -> Engine:
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelLoadError(
            f"The {scheme!r} engine ({target}) is not installed here ({exc}); install it, "
            "or set IMAGINE_MODEL to a model of another engine."
        ) from exc
    return cast(Engine, getattr(module, attribute))


def engine_for(model: str) -> Engine:
    """The engine serving `model`; `ModelLoadError` naming the known schemes when none does."""
    scheme = scheme_of(model)
    if scheme is None:
        return DIFFUSERS
    if scheme in BUILT_IN:
        return _import(BUILT_IN[scheme], scheme)
    entry_point = _third_party().get(scheme)
    if entry_point is None:
        known = ", ".join(f"{name}:" for name in known_schemes())
        raise ModelLoadError(
            f"IMAGINE_MODEL {model!r} names the engine {scheme!r}, which is not installed here; the known "
            f"engines are {known} (and hub ids, folders or `tiny` for diffusers)."
        )
    try:
        return cast(Engine, entry_point.load())
    except Exception as exc:  # a third party's import error, whatever its kind, is one thing to fix
        raise ModelLoadError(
            f"The {scheme!r} engine ({entry_point.value}) failed to load: {exc}; "
            "reinstall or fix that package."
        ) from exc


def capabilities(model: str) -> Capabilities:
    """What the engine of `model` honours and can do, without loading the model."""
    return engine_for(model).capabilities(model)


class EngineRouter:
    """A `Backend` for a default model plus `--v`/`--niji` aliases on other engines: each job goes to
    the backend of its alias's model, loaded on first use (one at a time: a worker runs one job at a
    time anyway)."""

    def __init__(
        self, default: Backend, default_model: str, aliases: Mapping[str, str], *, load: Any
    ) -> None:
        """`aliases` map an alias to a model served by another engine than `default`'s (or another
        model of it); `load(model)` loads one."""
        self.default = default
        self.name = default.name
        self._default_model = default_model
        self._aliases = dict(aliases)
        self._load = load
        self._others: dict[str, Backend] = {}
        self._lock = threading.Lock()

    @property
    def capabilities(self) -> Capabilities:
        return self.default.capabilities

    @property
    def checker(self) -> str | None:
        return self.default.checker

    def routes(self, alias: str | None) -> str | None:
        """The model an alias routes to here, or None when the default backend serves it."""
        if alias is None:
            return None
        model = self._aliases.get(alias, alias if alias in self._aliases.values() else None)
        return None if model is None or model == self._default_model else model

    def backend_for(self, alias: str | None) -> Backend:
        model = self.routes(alias)
        if model is None:
            return self.default
        with self._lock:
            if model not in self._others:
                log.info("loading model %s for alias %s", model, alias)
                self._others[model] = self._load(model)
            return self._others[model]

    def generate(
        self,
        request: GenerationRequest,
        *,
        on_progress: ProgressCallback,
        cancelled: threading.Event,
    ) -> GenerationResult:
        backend = self.backend_for(request.model)
        if backend is not self.default:
            # The alias's engine runs it as its own default model.
            from dataclasses import replace

            request = replace(request, model=None)
        return backend.generate(request, on_progress=on_progress, cancelled=cancelled)

    def close(self) -> None:
        for backend in self._others.values():
            backend.close()
        self._others.clear()
        self.default.close()
