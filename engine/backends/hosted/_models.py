"""What each Images API model accepts, and how a prompt's `--ar` and `--q` become its `size` and `quality`.

The facts come from the Images API reference (the `openai` package's `images.generate`/`images.edit`
parameter documentation): GPT image models take `n` from 1 to 10, the sizes 1024x1024, 1536x1024 and
1024x1536 (the `gpt-image-2` family any `WIDTHxHEIGHT` whose sides are multiples of 16 with a ratio
between 1:3 and 3:1), `quality` low/medium/high/auto, and stream `partial_images` (0–3). Compatible
servers differ; `openai:<model>,max_n=1,stream=false` says what theirs can't do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from engine.errors import ModelLoadError

__all__ = ["SCHEME", "ModelSpec", "Profile", "parse_spec"]

SCHEME = "openai"

_GPT_QUALITIES: Mapping[float, str] = {0.25: "low", 0.5: "medium", 1.0: "auto", 2.0: "high"}
"""`--q` → `quality`: 1 (Midjourney's default) is the model's own default, `auto`."""
_PIXELS = 1024 * 1024
"""The area a free-size model is asked for (what its square standard size has)."""
PARTIAL_IMAGES = 2
"""Partial images asked for per streamed image (the API allows 0–3); each becomes a live preview."""


@dataclass(frozen=True, slots=True)
class Profile:
    """What one model accepts."""

    max_n: int = 10
    sizes: tuple[tuple[int, int], ...] = ((1024, 1024), (1536, 1024), (1024, 1536))
    free_size: bool = False
    """Any multiple-of-16 size with a ratio within 1:3..3:1 (the gpt-image-2 family)."""
    stream: bool = True
    """Streams `partial_images` (GPT image models); else progress is elapsed time."""
    qualities: Mapping[float, str] = field(default_factory=lambda: dict(_GPT_QUALITIES))
    edits: bool = True
    """Has the edits endpoint (variations and image prompts go through it)."""
    input_fidelity: bool = False
    """Takes `input_fidelity` on edits (gpt-image-1.5 takes high and low)."""
    b64_by_default: bool = True
    """Returns `b64_json` without being asked; retired DALL·E models needed `response_format`."""

    def size_for(self, aspect: tuple[int, int]) -> tuple[int, int]:
        """The size closest in shape to `aspect` that the model makes."""
        ratio = aspect[0] / aspect[1]
        if self.free_size:
            ratio = min(3.0, max(1 / 3, ratio))
            width = math.sqrt(_PIXELS * ratio)
            height = width / ratio
            return max(16, round(width / 16) * 16), max(16, round(height / 16) * 16)
        return min(self.sizes, key=lambda size: abs(math.log(size[0] / size[1] / ratio)))

    def quality_for(self, quality: float) -> str | None:
        """The model's quality level for `--q`; None = the model takes no `quality`."""
        if not self.qualities:
            return None
        return (
            self.qualities.get(quality) or self.qualities[min(self.qualities, key=lambda q: abs(q - quality))]
        )


_GPT = Profile()
_PROFILES: dict[str, Profile] = {
    "gpt-image-1": _GPT,
    "gpt-image-1-mini": _GPT,
    "gpt-image-1.5": replace(_GPT, input_fidelity=True),
    "chatgpt-image-latest": _GPT,
    "dall-e-3": Profile(
        max_n=1,
        sizes=((1024, 1024), (1792, 1024), (1024, 1792)),
        stream=False,
        qualities={0.25: "standard", 0.5: "standard", 1.0: "standard", 2.0: "hd"},
        edits=False,
        b64_by_default=False,
    ),
    "dall-e-2": Profile(sizes=((1024, 1024),), stream=False, qualities={}, b64_by_default=False),
}


def _profile(model: str) -> Profile:
    if model in _PROFILES:
        return _PROFILES[model]
    if model.startswith("gpt-image-2"):
        return replace(_GPT, free_size=True)
    return _GPT  # compatible servers mostly mimic the GPT image models; options say where not


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """`openai:<model>[,max_n=N][,stream=false]` taken apart."""

    spec: str
    model: str
    profile: Profile

    @property
    def engine(self) -> str:
        """How members see it named: `OpenAI gpt-image-1`."""
        return f"OpenAI {self.model}"


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_spec(spec: str) -> ModelSpec:
    """Take `openai:gpt-image-1` (options after commas) apart; `ModelLoadError` when it is malformed."""
    scheme, _, rest = spec.partition(":")
    model, *options = [part.strip() for part in rest.split(",")]
    if scheme != SCHEME or not model:
        raise ModelLoadError(
            f"IMAGINE_MODEL={spec!r} names no OpenAI model; write it like openai:gpt-image-1."
        )
    profile = _profile(model)
    for option in options:
        key, _, value = option.partition("=")
        key, value = key.strip(), value.strip().lower()
        if key == "max_n" and value.isdigit() and 1 <= int(value) <= 10:
            profile = replace(profile, max_n=int(value))
        elif key == "stream" and value in _TRUE + _FALSE:
            profile = replace(profile, stream=value in _TRUE)
        else:
            raise ModelLoadError(
                f"IMAGINE_MODEL={spec!r}: {option!r} is not an option of the OpenAI engine; it takes "
                "max_n=1..10 and stream=true|false, like openai:my-model,max_n=1,stream=false."
            )
    return ModelSpec(spec, model, profile)
