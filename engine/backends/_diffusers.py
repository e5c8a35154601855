"""The diffusers engine: every model name no other engine claims (a hub id, a local folder, `tiny`)."""

from __future__ import annotations

from collections.abc import Mapping

from engine.backend import Backend, Capabilities

__all__ = ["DIFFUSERS", "DiffusersEngine"]

DIFFUSERS = Capabilities("diffusers")
"""Stable Diffusion and SDXL pipelines honour every prompt parameter, paint (inpainting) and start from
pictures (image-to-image)."""


class DiffusersEngine:
    """Loads diffusers pipelines; `--v`/`--niji` aliases naming other diffusers models share its device."""

    def capabilities(self, spec: str) -> Capabilities:
        return DIFFUSERS

    def load(
        self,
        spec: str,
        *,
        device: str,
        safety_checker: str,
        aliases: Mapping[str, str] | None = None,
        diffusion_upscale: bool = True,
    ) -> Backend:
        from engine.backends._model import load_model, resolve_device

        # Fails fast, before torch and diffusers are imported, where the model can't be had.
        model = load_model(spec, device=device)
        resolved = resolve_device(device)
        from engine.backends.diffusion import DiffusersBackend

        return DiffusersBackend(
            model,
            device=resolved,
            aliases=aliases,
            diffusion_upscale=diffusion_upscale,
            safety_checker=safety_checker,
        )
