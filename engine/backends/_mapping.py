"""From Midjourney-level knobs to pipeline arguments: size, steps, guidance, early stop.

Pure functions of the request and the model family, so every mapping is documented and tested here
(the README's parameter reference describes the same numbers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.backends._family import Family
from engine.errors import GenerationError
from engine.types import GenerationRequest

__all__ = [
    "STYLIZE_DEFAULT",
    "TURBO_NEGATIVE_CFG",
    "Plan",
    "guidance_for",
    "image_strength",
    "img2img_steps",
    "plan_for",
    "size_for",
    "steps_for",
    "stop_iteration",
]

STYLIZE_DEFAULT = 100
STYLIZE_MAX = 1000
TURBO_NEGATIVE_CFG = 1.5
"""Guidance switched on for a Turbo model when the prompt has `--no`: the negative prompt only acts
through classifier-free guidance, which doubles the UNet work per step."""


@dataclass(frozen=True, slots=True)
class Plan:
    """The pipeline-level settings for one request."""

    width: int
    height: int
    steps: int
    """`num_inference_steps` for the pipeline (image-to-image runs `steps × strength` of them)."""
    cfg: float
    notes: tuple[str, ...] = ()
    """Things the owner should know (recorded in the result's `extra["notes"]`)."""


def size_for(aspect_ratio: tuple[int, int], family: Family) -> tuple[int, int]:
    """Width and height with the given ratio, about the model's native pixel area, multiples of 8."""
    a, b = aspect_ratio
    if a <= 0 or b <= 0:
        raise GenerationError(f"`--ar` takes two whole numbers above 0 like 16:9; got {a}:{b}.")
    multiple = family.size_multiple
    width = math.sqrt(family.native_area * a / b)
    height = width * b / a
    return (
        max(multiple, round(width / multiple) * multiple),
        max(multiple, round(height / multiple) * multiple),
    )


def steps_for(request: GenerationRequest, family: Family) -> int:
    """`--steps` as given, else the family's default scaled by `--quality` (Turbo: at most 4)."""
    if request.steps is not None:
        if request.steps < 1:
            raise GenerationError(f"`--steps` takes a whole number of at least 1; got {request.steps}.")
        return request.steps
    steps = max(1, round(family.default_steps * request.quality))
    return min(steps, family.max_steps) if family.max_steps is not None else steps


def guidance_for(
    request: GenerationRequest, family: Family, *, has_negative: bool
) -> tuple[float, str | None]:
    """Classifier-free guidance scale and an optional note for the owner.

    `--stylize` lowers guidance as it rises (Midjourney: low = close to the prompt, high = more
    artistic): 0 → 1.5× the family default, 100 → the default, 1000 → 0.5×. Turbo models run
    without guidance unless `--no` needs it.
    """
    if request.cfg is not None:
        if has_negative and request.cfg <= 1.0:
            raise GenerationError(
                f"`--no` only works with guidance above 1, but `--cfg {request.cfg:g}` turns guidance off; "
                "drop `--cfg` or set it above 1 (e.g. `--cfg 2`)."
            )
        return request.cfg, None
    if family.turbo:
        if has_negative:
            return TURBO_NEGATIVE_CFG, (
                f"`--no` on a Turbo model switched guidance on (cfg {TURBO_NEGATIVE_CFG:g}), "
                "which takes about twice as long per step"
            )
        return 0.0, None
    stylize = min(max(request.stylize, 0), STYLIZE_MAX)
    if stylize <= STYLIZE_DEFAULT:
        factor = 1.5 - 0.5 * stylize / STYLIZE_DEFAULT
    else:
        factor = 1.0 - 0.5 * (stylize - STYLIZE_DEFAULT) / (STYLIZE_MAX - STYLIZE_DEFAULT)
    # Keep guidance on (> 1) for families that rely on it, so `--no` still acts at --stylize 1000.
    return round(max(family.default_cfg * factor, 1.5), 2), None


def img2img_steps(steps: int, strength: float) -> int:
    """`num_inference_steps` for image-to-image so that at least one step (`int(n × strength)`) runs."""
    if not 0.0 < strength <= 1.0:
        raise GenerationError(f"Image-to-image strength must be above 0 and at most 1; got {strength:g}.")
    n = max(steps, math.ceil(1.0 / strength))
    while int(n * strength) < 1:  # guard against float rounding just below 1
        n += 1
    return n


IMAGE_WEIGHT_MAX = 3.0
IMAGE_STRENGTH_AT_0 = 0.95
"""`--iw 0`: the picture only tints the start (a little of its layout and palette survives the noise)."""
IMAGE_STRENGTH_PER_WEIGHT = 0.25


def image_strength(image_weight: float) -> float:
    """Image-to-image strength for an image prompt's `--iw` (0–3): 0.95 - 0.25 × iw.

    `--iw 0` → 0.95 (the text decides, the picture tints), 1 (the default) → 0.7, 2 → 0.45,
    3 → 0.2 (the picture, retouched). Strength is the share of the schedule that is re-noised and
    denoised again, so a higher weight keeps more of the picture and also runs fewer steps.
    """
    if not 0.0 <= image_weight <= IMAGE_WEIGHT_MAX:
        raise GenerationError(f"`--iw` takes a number from 0 to {IMAGE_WEIGHT_MAX:g}; got {image_weight:g}.")
    return round(IMAGE_STRENGTH_AT_0 - IMAGE_STRENGTH_PER_WEIGHT * image_weight, 4)


def stop_iteration(total: int, stop: int) -> int:
    """How many of `total` denoising iterations run for `--stop` (10–100, percent)."""
    if not 10 <= stop <= 100:
        raise GenerationError(f"`--stop` takes a whole number from 10 to 100; got {stop}.")
    return max(1, math.ceil(total * stop / 100))


def plan_for(request: GenerationRequest, family: Family, *, has_negative: bool) -> Plan:
    """Size, steps and guidance for a text-to-image request."""
    width, height = size_for(request.aspect_ratio, family)
    cfg, note = guidance_for(request, family, has_negative=has_negative)
    return Plan(width, height, steps_for(request, family), cfg, (note,) if note else ())
