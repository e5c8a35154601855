"""The safety check on images going into and coming out of a job: the seam moderation plugs into.

A `SafetyChecker` says, for each image, whether it is flagged; what a flagged image gets is the bot's
business (its servers' rules), not the engine's. `load_safety_checker` builds the checker that
`IMAGINE_SAFETY_CHECKER` names:

- `model` (the default): the checker the model's pipeline ships, when it ships one (Stable Diffusion
  1.x/2.x carry diffusers' `StableDiffusionSafetyChecker`, a CLIP vision model of about 1.2 GB in
  float32); otherwise none. SDXL, SDXL-Turbo and the built-in `tiny` model ship none.
- `none`: no check.
- `package.module:attribute`: a zero-argument callable returning a `SafetyChecker` (your own
  classifier; the tests use a tiny one).

Whatever the setting, the pipeline's own checker is taken out of the pipeline: left in, the pipeline
would black out what it flags before anyone could decide what the image gets. Checks are blocking
and run on the backend's thread, on the device the model uses.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from engine.errors import GenerationError, ModelLoadError

__all__ = [
    "MODEL",
    "NONE",
    "PipelineSafetyChecker",
    "SafetyChecker",
    "check_images",
    "detach_pipeline_checker",
    "import_safety_checker",
    "load_safety_checker",
]

MODEL = "model"
"""`IMAGINE_SAFETY_CHECKER=model`: the model's own checker when its pipeline ships one."""
NONE = "none"
"""`IMAGINE_SAFETY_CHECKER=none`: no check at all."""


@runtime_checkable
class SafetyChecker(Protocol):
    """Flags images; called on the backend's thread, so it may block and use the device."""

    name: str
    """How `/config show` and the recipe name it."""

    def flagged(self, images: Sequence[Image.Image]) -> list[bool]:
        """One verdict per image, in order: True = flagged."""
        ...


class PipelineSafetyChecker:
    """The checker a diffusers pipeline ships, called as the pipeline's own `run_safety_checker` calls it."""

    def __init__(self, checker: Any, feature_extractor: Any, *, name: str) -> None:
        self.name = name
        self.checker = checker
        self.feature_extractor = feature_extractor
        # Its warning says "a black image will be returned instead", which is not what happens here.
        logging.getLogger(type(checker).__module__).setLevel(logging.ERROR)

    def flagged(self, images: Sequence[Image.Image]) -> list[bool]:
        import numpy as np
        import torch

        if not images:
            return []
        parameter = next(self.checker.parameters())
        clip_input = self.feature_extractor(list(images), return_tensors="pt").pixel_values
        # The checker blacks out what it flags in the array it is given; a copy, so ours stay whole.
        pixels = np.stack([np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 for image in images])
        with torch.no_grad():
            _, has_nsfw_concept = self.checker(
                images=pixels, clip_input=clip_input.to(device=parameter.device, dtype=parameter.dtype)
            )
        return [bool(flag) for flag in has_nsfw_concept]

    def to(self, device: str) -> None:
        """Move the checker's model with its pipeline (a parked model leaves the accelerator)."""
        self.checker.to(device)


def detach_pipeline_checker(pipe: Any) -> PipelineSafetyChecker | None:
    """Take the pipeline's own checker out of `pipe` (it then blacks out nothing) and return it, or
    None when the pipeline ships none (or only half of one)."""
    checker = getattr(pipe, "safety_checker", None)
    extractor = getattr(pipe, "feature_extractor", None)
    if checker is not None:
        # Assigning through the pipeline also updates its config, so pipelines derived with
        # `from_pipe` (image-to-image, inpainting) are built without it too.
        pipe.safety_checker = None
    if checker is None or extractor is None:
        return None
    return PipelineSafetyChecker(checker, extractor, name=f"{type(checker).__name__} (the model's own)")


def import_safety_checker(path: str) -> SafetyChecker:
    """The checker made by the zero-argument callable at `package.module:attribute`."""
    module_name, _, attribute = path.partition(":")
    how = (
        "IMAGINE_SAFETY_CHECKER takes `model`, `none`, or `package.module:attribute` naming a "
        "zero-argument callable that returns a safety checker"
    )
    if not module_name or not attribute:
        raise ModelLoadError(f"{how}; got {path!r}.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelLoadError(f"{how}; module {module_name!r} cannot be imported ({exc}).") from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ModelLoadError(f"{how}; {module_name!r} has no callable {attribute!r}.")
    checker = factory()
    if not isinstance(checker, SafetyChecker):
        raise ModelLoadError(
            f"{how}; {path} returned {type(checker).__name__}, which has no `name` and `flagged(images)`."
        )
    return checker


def load_safety_checker(setting: str, pipe: Any = None) -> SafetyChecker | None:
    """The checker `setting` names for a model whose pipeline is `pipe` (None: the model has no
    pipeline, like the simulated engine). The pipeline's own checker leaves `pipe` either way."""
    own = detach_pipeline_checker(pipe) if pipe is not None else None
    if setting == MODEL:
        return own
    if setting == NONE:
        return None
    return import_safety_checker(setting)


def check_images(checker: SafetyChecker | None, images: Sequence[Image.Image]) -> tuple[bool, ...]:
    """`checker`'s verdicts on `images` (empty when there is no checker); a checker that answers for
    the wrong number of images fails the job rather than letting an image through unchecked."""
    if checker is None:
        return ()
    verdicts = tuple(bool(flag) for flag in checker.flagged(images))
    if len(verdicts) != len(images):
        raise GenerationError(
            f"The safety check {checker.name!r} answered for {len(verdicts)} images instead of "
            f"{len(images)}; tell the bot's admin."
        )
    return verdicts
