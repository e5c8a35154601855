"""Parsing: `/imagine` text → `Request`s; `str(request)` is canonical text again. Private to `bot.prompt`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.prompt._lexer import (
    PromptError,
    escape,
    expand_permutations,
    format_number,
    normalise_dashes,
    split_image_prompts,
    split_multiprompt,
    split_parameters,
)
from bot.prompt._parameters import PromptLimits, apply_parameters, model_flag

__all__ = ["DEFAULT_LIMITS", "MAX_IMAGE_PROMPTS", "PromptPart", "Request", "parse"]

MAX_IMAGE_PROMPTS = 5
"""Pictures one prompt may start from (links and attached images together), as `/blend` takes."""


@dataclass(frozen=True, slots=True)
class PromptPart:
    """One part of a multi-prompt (`hot dog::1.5`): its text and weight (negative pushes away)."""

    text: str
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed prompt: what to draw and every parameter, Midjourney defaults where unset."""

    prompt: str
    """The text to draw; for a multi-prompt, its positive parts joined with `, `."""
    negative_prompt: str = ""
    """`--no` text, then the texts of negative-weight parts, joined with `, `."""
    aspect_ratio: tuple[int, int] = (1, 1)
    """Width to height, in lowest terms: `--ar 32:18` gives (16, 9)."""
    seed: int | None = None
    """`--seed`; None lets the bot pick one."""
    parts: tuple[PromptPart, ...] = ()
    """Multi-prompt parts in order (negative ones too); empty when the prompt has no `::`."""
    image_prompts: tuple[str, ...] = ()
    """http(s) image links: attached images first, then the links at the start of the prompt."""
    image_weight: float = 1.0
    """`--iw`: how much the image prompts count against the text (0-3)."""
    chaos: int = 0
    stylize: int = 100
    quality: float = 1.0
    stop: int = 100
    tile: bool = False
    model: str | None = None
    """A configured model alias (from `--v`/`--niji`); None = the default model."""
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None

    def __str__(self) -> str:
        """Canonical prompt text: parses back to this request (`--repeat` is not part of a request)."""
        pieces = [*self.image_prompts, self._text(), *self._parameters()]
        return escape(" ".join(piece for piece in pieces if piece))

    def _text(self) -> str:
        if not self.parts:
            return self.prompt
        # A space keeps `a: ::2` from reading as `a:` + `::2` = `a` + `:::2`.
        return " ".join(
            f"{part.text}{' ::' if part.text.endswith(':') else '::'}{format_number(part.weight)}"
            for part in self.parts
        )

    def _no(self) -> str:
        """The `--no` text: `negative_prompt` without the negative parts that `parse` appended."""
        tail = ", ".join(part.text for part in self.parts if part.weight < 0)
        if not tail:
            return self.negative_prompt
        if self.negative_prompt == tail:
            return ""
        if self.negative_prompt.endswith(", " + tail):
            return self.negative_prompt[: -len(tail) - 2]
        return self.negative_prompt

    def _parameters(self) -> list[str]:
        out: list[str] = []
        if self.aspect_ratio != (1, 1):
            out.append(f"--aspect {self.aspect_ratio[0]}:{self.aspect_ratio[1]}")
        if self.model is not None:
            out.append(model_flag(self.model))
        if no := self._no():
            out.append(f"--no {no}")
        if self.chaos != 0:
            out.append(f"--chaos {self.chaos}")
        if self.stylize != 100:
            out.append(f"--stylize {self.stylize}")
        if self.quality != 1.0:
            out.append(f"--quality {format_number(self.quality)}")
        if self.stop != 100:
            out.append(f"--stop {self.stop}")
        if self.tile:
            out.append("--tile")
        if self.image_prompts and self.image_weight != 1.0:
            out.append(f"--iw {format_number(self.image_weight)}")
        if self.seed is not None:
            out.append(f"--seed {self.seed}")
        if self.steps is not None:
            out.append(f"--steps {self.steps}")
        if self.cfg is not None:
            out.append(f"--cfg {format_number(self.cfg)}")
        if self.sampler is not None:
            out.append(f"--sampler {self.sampler}")
        return out


DEFAULT_LIMITS = PromptLimits()
"""The limits `parse` uses when given none (the settings' defaults, no model aliases)."""

_EXAMPLE = "like `a lighthouse at dusk --ar 16:9`"


def _parse_variant(
    text: str, limits: PromptLimits, defaults: Mapping[str, str] | None, attached: tuple[str, ...]
) -> list[Request]:
    """One expanded prompt: its request, repeated `--repeat` times."""
    prompt_text, raw_parameters = split_parameters(normalise_dashes(text))
    linked, rest = split_image_prompts(prompt_text)
    images = attached + linked
    if len(images) > MAX_IMAGE_PROMPTS:
        raise PromptError(
            f"This prompt starts from {len(images)} images; at most {MAX_IMAGE_PROMPTS} can be used. "
            "Remove some links or attachments."
        )
    # Parameters first: `--ar 16:9 a cat` is better told that text after `--ar` is its value.
    params = apply_parameters(raw_parameters, defaults, limits, has_images=bool(images))
    if not rest and not images:  # pictures alone are a prompt (as /blend's are); nothing at all is not
        raise PromptError(f"The prompt has no text; describe the picture before any parameters, {_EXAMPLE}.")
    split = split_multiprompt(rest)
    parts = tuple(PromptPart(part, weight) for part, weight in split or ())
    negatives = [part.text for part in parts if part.weight < 0]
    request = Request(
        prompt=", ".join(part.text for part in parts if part.weight > 0) if parts else rest,
        negative_prompt=", ".join(t for t in (params.no, *negatives) if t),
        aspect_ratio=params.aspect_ratio,
        seed=params.seed,
        parts=parts,
        image_prompts=images,
        image_weight=1.0 if params.image_weight is None else params.image_weight,
        chaos=params.chaos,
        stylize=params.stylize,
        quality=params.quality,
        stop=params.stop,
        tile=params.tile,
        model=params.model,
        steps=params.steps,
        cfg=params.cfg,
        sampler=params.sampler,
    )
    return [request] * params.repeat


def parse(
    text: str,
    *,
    limits: PromptLimits = DEFAULT_LIMITS,
    defaults: Mapping[str, str] | None = None,
    images: Sequence[str] = (),
) -> list[Request]:
    """Parse `/imagine` text into requests (one per permutation and `--repeat`); raise `PromptError`.

    `defaults` are the user's saved parameters ({"ar": "16:9", "s": "250"}), used where the text sets
    none of that parameter's names. `images` are links to attached pictures: they come before the
    prompt's own links (as Midjourney puts an uploaded image's link first) and count against
    `MAX_IMAGE_PROMPTS` with them; the text may then be empty.
    """
    if len(text) > limits.max_length:
        raise PromptError(
            f"The prompt is {len(text)} characters long; the limit on this bot is {limits.max_length}. "
            "Shorten it."
        )
    attached = tuple(images)
    if not text.strip() and not attached:
        raise PromptError(f"The prompt is empty; describe the picture, {_EXAMPLE}.")
    requests: list[Request] = []
    variants = expand_permutations(text, limits.max_permutations)
    for variant in variants:
        requests.extend(_parse_variant(variant, limits, defaults, attached))
    if len(requests) > limits.max_permutations:
        raise PromptError(
            f"This prompt makes {len(requests)} jobs ({len(variants)} prompt(s) with `--repeat`); "
            f"the limit on this bot is {limits.max_permutations}. Lower `--repeat` or use fewer options."
        )
    return requests
