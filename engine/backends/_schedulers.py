"""`--sampler` names → diffusers schedulers built from the model's own scheduler config.

Building from the loaded config keeps the model's training noise schedule (betas, prediction type,
timestep spacing), so a Turbo model stays on its trailing spacing whatever sampler is picked.
"""

from __future__ import annotations

from typing import Any

from engine.errors import GenerationError
from engine.types import SAMPLERS

__all__ = ["DenoisedTap", "SchedulerCache", "sampler_name"]


def _build(name: str, config: Any) -> Any:
    import diffusers

    match name:
        case "euler":
            return diffusers.EulerDiscreteScheduler.from_config(config)
        case "euler_a":
            return diffusers.EulerAncestralDiscreteScheduler.from_config(config)
        case "heun":
            return diffusers.HeunDiscreteScheduler.from_config(config)
        case "dpmpp_2m":
            return diffusers.DPMSolverMultistepScheduler.from_config(
                config, algorithm_type="dpmsolver++", use_karras_sigmas=False
            )
        case "dpmpp_2m_karras":
            return diffusers.DPMSolverMultistepScheduler.from_config(
                config, algorithm_type="dpmsolver++", use_karras_sigmas=True
            )
        case "ddim":
            return diffusers.DDIMScheduler.from_config(config)
        case "unipc":
            return diffusers.UniPCMultistepScheduler.from_config(config)
        case "lcm":
            return diffusers.LCMScheduler.from_config(config)
    raise GenerationError(f"`--sampler` takes one of {', '.join(SAMPLERS)}; got {name!r}.")


def sampler_name(scheduler: Any) -> str:
    """Our `--sampler` name for a scheduler instance, or its class name when it has none."""
    cls = type(scheduler).__name__
    config = scheduler.config
    names = {
        "EulerDiscreteScheduler": "euler",
        "EulerAncestralDiscreteScheduler": "euler_a",
        "HeunDiscreteScheduler": "heun",
        "DDIMScheduler": "ddim",
        "UniPCMultistepScheduler": "unipc",
        "LCMScheduler": "lcm",
    }
    if cls == "DPMSolverMultistepScheduler" and config.get("algorithm_type") == "dpmsolver++":
        return "dpmpp_2m_karras" if config.get("use_karras_sigmas") else "dpmpp_2m"
    return names.get(cls, cls)


class SchedulerCache:
    """The model's default scheduler plus one instance per sampler asked for, built on first use."""

    def __init__(self, default: Any) -> None:
        self.default = default
        self._built: dict[str, Any] = {}

    def get(self, name: str | None) -> Any:
        """The scheduler for `--sampler name` (None = the model's default)."""
        if name is None or name == sampler_name(self.default):
            return self.default
        if name not in self._built:
            self._built[name] = _build(name, self.default.config)
        return self._built[name]


class DenoisedTap:
    """Records the scheduler's latest estimate of the clean latents while installed (`--stop`).

    Decoding the half-denoised latents of an interrupted run gives a noisy picture; decoding the
    scheduler's own estimate of the final latents at that step gives what Midjourney's `--stop` shows,
    a blurrier, less detailed image. Euler, Euler a, Heun, DDIM and LCM return that estimate from
    `step`; DPM++ and UniPC keep it as their latest model output.
    """

    def __init__(self, scheduler: Any) -> None:
        self._scheduler = scheduler
        self.latest: Any = None

    def __enter__(self) -> DenoisedTap:
        original = self._scheduler.step

        def step(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            self.latest = self._estimate(out)
            return out

        self._scheduler.step = step  # an instance attribute shadows the method until __exit__
        return self

    def __exit__(self, *exc: object) -> None:
        del self._scheduler.step

    def _estimate(self, out: Any) -> Any:
        if isinstance(out, tuple):
            return out[1] if len(out) > 1 else self._from_history()
        estimate = getattr(out, "pred_original_sample", None)
        if estimate is None:
            estimate = getattr(out, "denoised", None)
        return estimate if estimate is not None else self._from_history()

    def _from_history(self) -> Any:
        config = self._scheduler.config
        predicts_x0 = config.get("algorithm_type") in ("dpmsolver++", "sde-dpmsolver++") or (
            type(self._scheduler).__name__ == "UniPCMultistepScheduler" and config.get("predict_x0", True)
        )
        outputs = getattr(self._scheduler, "model_outputs", None)
        return outputs[-1] if predicts_x0 and outputs else None
