"""Data that crosses the engine's boundary: what to generate, progress, and what came out.

Everything here is a frozen dataclass of plain values (no tensors, no PIL in requests), so a
request can later travel to a remote worker unchanged.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from PIL import Image

__all__ = [
    "GRID_SIZE",
    "SAMPLERS",
    "UPSCALE_CREATIVE",
    "UPSCALE_SUBTLE",
    "VARY_STRONG",
    "VARY_SUBTLE",
    "GenerationRequest",
    "GenerationResult",
    "Mode",
    "Progress",
    "WeightedPrompt",
]

GRID_SIZE = 4
"""Images per grid; cells are numbered 1 top-left, 2 top-right, 3 bottom-left, 4 bottom-right."""


SAMPLERS = ("euler", "euler_a", "heun", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc", "lcm")
"""`--sampler` names every backend understands (mapped to diffusers schedulers by the diffusers backend)."""


VARY_STRONG = 0.6
"""Image-to-image strength of V1–V4 and Vary (Strong): a new take that keeps the cell's layout and palette."""
VARY_SUBTLE = 0.35
"""Image-to-image strength of Vary (Subtle): the same picture with small changes."""
UPSCALE_SUBTLE = 0.15
"""Strength of Upscale (Subtle)'s diffusion pass over the 2x resampled image: the least change."""
UPSCALE_CREATIVE = 0.5
"""Strength of Upscale (Creative)'s pass: adds detail, keeps the composition."""


class Mode(enum.StrEnum):
    TEXT = "text"  # text-to-image: a fresh grid (imagine, re-roll)
    VARIATION = "variation"  # image-to-image from one cell, `strength` says how far to move
    UPSCALE = "upscale"  # one image at 2x, keeping its composition
    IMAGE = "image"  # a fresh grid that starts from the member's picture(s), `image_weight` says how much
    EDIT = "edit"  # four fills of new or chosen area around/in `init_image`, as `edit` says (inpainting)


@dataclass(frozen=True, slots=True)
class WeightedPrompt:
    text: str
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What to generate. Midjourney-level knobs; the backend maps them onto its pipeline."""

    prompt: str
    negative_prompt: str = ""
    weighted_prompts: tuple[WeightedPrompt, ...] = ()
    """Multi-prompt parts (`a::2 b::-0.5`); empty means `prompt` alone with weight 1."""
    aspect_ratio: tuple[int, int] = (1, 1)
    seed: int = 0
    """Base seed: image i of a grid uses `seed + i`."""
    count: int = GRID_SIZE
    mode: Mode = Mode.TEXT
    init_image: Path | None = None
    """Source image for VARIATION and UPSCALE; for IMAGE, the start image made from the member's pictures
    (already fitted to `aspect_ratio` and blended when there are several)."""
    image_weight: float = 1.0
    """`--iw` (0–3) of an IMAGE job: how much of the start image survives (see the backend's mapping)."""
    sources: tuple[str, ...] = ()
    """SHA-256 (hex) of each picture an IMAGE job starts from, for the recipe."""
    strength: float = 0.0
    """How far VARIATION moves from `init_image` (0..1); for UPSCALE, the diffusion pass's strength
    (0 = the backend's default, `UPSCALE_SUBTLE`, `UPSCALE_CREATIVE`)."""
    edit: str = ""
    """What an EDIT job paints, relative to `init_image`: `zoom F` (F in (1, 2]: the image shrinks by F
    into the middle of a canvas of its own size), `pan left|right|up|down` (the canvas grows by half
    the image's side that way), `square` (the short side grows to match, evenly on both ends), or
    `region C C …` (cells 1–9 of a 3x3 grid over the image, row by row from the top left)."""
    max_side: int | None = None
    """The longest side an EDIT or UPSCALE result may have (`IMAGINE_MAX_SIDE`); None = no cap."""
    parent: str = ""
    """`<job id>#<cell>` of the image an EDIT, VARIATION or UPSCALE starts from, for the recipe."""
    model: str | None = None
    """A model alias from settings; None = the default model."""
    stylize: int = 100
    chaos: int = 0
    quality: float = 1.0
    stop: int = 100
    tile: bool = False
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    allow_flagged_input: bool = False
    """Whether an IMAGE job may start from a picture the safety check flags (else `ImageFlagged`); the bot
    allows it only where flagged images may be posted: age-restricted channels of servers that allow them."""

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple((self.seed + i) % 2**32 for i in range(self.count))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields, without `init_image` (a path means nothing on another machine)."""
        out: dict[str, Any] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name == "init_image":
                continue
            if spec.name == "weighted_prompts":
                value = [[part.text, part.weight] for part in value]
            elif spec.name in ("aspect_ratio", "sources"):
                value = list(value)
            elif spec.name == "mode":
                value = value.value
            out[spec.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, init_image: Path | None = None) -> GenerationRequest:
        """The request `to_dict` gave, with its source image at `init_image`."""
        values = dict(data)
        values["weighted_prompts"] = tuple(
            WeightedPrompt(text, weight) for text, weight in values["weighted_prompts"]
        )
        values["aspect_ratio"] = tuple(values["aspect_ratio"])
        values["sources"] = tuple(values.get("sources", ()))
        values["mode"] = Mode(values["mode"])
        return cls(init_image=init_image, **values)


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress event; `preview` is a cheap low-resolution look at the current latents."""

    step: int
    total: int
    preview: Image.Image | None = None

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0


@dataclass(frozen=True, slots=True)
class GenerationResult:
    """What came out: images in cell order, their seeds, and the recipe that made them."""

    images: tuple[Image.Image, ...]
    seeds: tuple[int, ...]
    width: int
    height: int
    steps: int
    cfg: float
    sampler: str
    model: str
    elapsed_s: float = 0.0
    """Wall time the backend spent on the device for this job (usage is measured from it)."""
    extra: dict[str, str] = field(default_factory=dict)
    flagged: tuple[bool, ...] = ()
    """The safety check's verdict on each image, in cell order (True = flagged); empty = not checked."""
    checker: str | None = None
    """The name of the safety checker that looked at the images; None = none did."""

    @property
    def any_flagged(self) -> bool:
        return any(self.flagged)
