"""From a parsed prompt (`bot.prompt.Request`) to what the engine generates (`GenerationRequest`)."""

from __future__ import annotations

import random

from bot.prompt import PromptError, Request
from engine.types import GenerationRequest, Mode, WeightedPrompt

__all__ = ["MAX_SEED", "choose_seed", "to_generation_request"]

MAX_SEED = 2**32 - 1
"""The largest `--seed`; grids use `seed + i` modulo 2**32 for their cells."""


def choose_seed(request: Request, rng: random.Random | None = None) -> int:
    """The seed a job runs with: the prompt's `--seed`, else a fresh random one."""
    if request.seed is not None:
        return request.seed
    return (rng or random.SystemRandom()).randint(0, MAX_SEED)


def to_generation_request(request: Request, *, seed: int) -> GenerationRequest:
    """A text-to-image grid job for `request`, run with `seed` (see `choose_seed`).

    Image prompts are refused with a `PromptError` rather than dropped: the engine cannot use them yet,
    and a prompt part the bot cannot honour must never be ignored silently.
    """
    if request.image_prompts:
        raise PromptError(
            "Image prompts (links at the start of the prompt) aren't supported by this bot yet; "
            "remove the link and describe the image in words instead.",
            parameter="--iw" if request.image_weight != 1.0 else None,
        )
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be between 0 and {MAX_SEED}; got {seed}")
    return GenerationRequest(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        weighted_prompts=tuple(WeightedPrompt(part.text, part.weight) for part in request.parts),
        aspect_ratio=request.aspect_ratio,
        seed=seed,
        mode=Mode.TEXT,
        model=request.model,
        stylize=request.stylize,
        chaos=request.chaos,
        quality=request.quality,
        stop=request.stop,
        tile=request.tile,
        steps=request.steps,
        cfg=request.cfg,
        sampler=request.sampler,
    )
