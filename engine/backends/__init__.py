"""Generation backends, chosen by the model's name (`engine.backends._registry`): `simulated[:…]`,
`openai:<model>`, `gan-tiny`/`gan:<folder>`, third-party engines of the `imaginebot.backends`
entry-point group, and diffusers for everything else (a hub id, a local folder, `tiny`).

Imports of torch, diffusers and each engine happen inside the functions that need them, so importing
this package is cheap for code that only wants the names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from engine.backend import Backend, Capabilities
from engine.backends._model import TINY
from engine.backends._registry import (
    DIFFUSERS,
    ENTRY_POINT_GROUP,
    EngineRouter,
    capabilities,
    engine_for,
    known_schemes,
    scheme_of,
)
from engine.safety import MODEL

if TYPE_CHECKING:
    from engine.backends.hosted import HostedSettings

HOSTED_SCHEME = "openai"

__all__ = [
    "ENTRY_POINT_GROUP",
    "TINY",
    "alias_capabilities",
    "capabilities",
    "known_schemes",
    "load_backend",
    "scheme_of",
]


def load_backend(
    model: str,
    *,
    device: str = "auto",
    aliases: Mapping[str, str] | None = None,
    diffusion_upscale: bool = True,
    safety_checker: str = MODEL,
    hosted: HostedSettings | None = None,
) -> Backend:
    """Load `model` once onto `device` and wrap it; `aliases` (`--v`/`--niji` names → models of any
    engine) load lazily, on their first job.

    Raises `ModelLoadError` with one sentence saying how to fix `IMAGINE_MODEL` (or `safety_checker`,
    `IMAGINE_SAFETY_CHECKER`: `model`, `none` or `package.module:attribute`, see `engine.safety`) when
    it can't load. `hosted` says how to reach hosted engines (None: as the environment says).
    `simulated[:options]` is the stand-in for a GPU that tests and benchmarks use (`engine.simulated`).
    """
    aliases = dict(aliases or {})
    engine = engine_for(model)
    # Diffusers models share one device through the diffusers backend's own model set; an alias
    # naming another engine's model goes through the router instead.
    shared = {a: m for a, m in aliases.items() if engine is DIFFUSERS and scheme_of(m) is None}
    if engine is DIFFUSERS:
        default = DIFFUSERS.load(
            model,
            device=device,
            safety_checker=safety_checker,
            aliases=shared,
            diffusion_upscale=diffusion_upscale,
        )
    elif scheme_of(model) == HOSTED_SCHEME:
        from engine.backends.hosted import ENGINE as OPENAI

        default = OPENAI.load(model, device=device, safety_checker=safety_checker, settings=hosted)
    else:
        default = engine.load(model, device=device, safety_checker=safety_checker)
    routed = {a: m for a, m in aliases.items() if a not in shared and m != model}
    if not routed:
        return default

    def load(other: str) -> Backend:
        return load_backend(
            other,
            device=device,
            diffusion_upscale=diffusion_upscale,
            safety_checker=safety_checker,
            hosted=hosted,
        )

    return EngineRouter(default, model, routed, load=load)


def alias_capabilities(model: str, aliases: Mapping[str, str], alias: str | None) -> Capabilities:
    """What the model a job asks for (`alias`: a `--v`/`--niji` name, None = `model`) honours."""
    if alias is None:
        return capabilities(model)
    return capabilities(aliases.get(alias, alias))
