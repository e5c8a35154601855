"""Generation backends. `load_backend` builds the diffusers backend for a hub id, a local folder or `tiny`
(or the simulated stand-in for a GPU).

Imports of torch and diffusers happen inside the functions that need them, so importing this package
is cheap for code that only wants the names.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.backend import Backend
from engine.backends._model import TINY, resolve_device
from engine.safety import MODEL, load_safety_checker

__all__ = ["TINY", "load_backend"]


def load_backend(
    model: str,
    *,
    device: str = "auto",
    aliases: Mapping[str, str] | None = None,
    diffusion_upscale: bool = True,
    safety_checker: str = MODEL,
) -> Backend:
    """Load `model` once onto `device` and wrap it; `aliases` (`--v`/`--niji` names → models) load lazily.

    Raises `ModelLoadError` with one sentence saying how to fix `IMAGINE_MODEL` (or `safety_checker`,
    `IMAGINE_SAFETY_CHECKER`: `model`, `none` or `package.module:attribute`, see `engine.safety`) when
    it can't load. `simulated[:options]` is the stand-in for a GPU that tests and benchmarks use
    (`engine.simulated`); it has no pipeline, so `model` means no check there.
    """
    from engine.simulated import SIMULATED, SimulatedBackend

    if model.partition(":")[0] == SIMULATED:
        return SimulatedBackend.from_spec(model, safety_checker=load_safety_checker(safety_checker))
    from engine.backends._model import load_model
    from engine.backends.diffusion import DiffusersBackend

    resolved = resolve_device(device)
    return DiffusersBackend(
        load_model(model, device=resolved),
        device=resolved,
        aliases=aliases,
        diffusion_upscale=diffusion_upscale,
        safety_checker=safety_checker,
    )
