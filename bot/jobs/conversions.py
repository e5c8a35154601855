"""A job's three forms: the parsed prompt (`bot.prompt.Request`), what the engine generates
(`GenerationRequest`), and the JSON a job row keeps in `params` to run it again after a restart.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from bot.prompt import PromptError, Request
from bot.store.models import Job
from engine.types import GenerationRequest, Mode, WeightedPrompt

__all__ = [
    "MAX_SEED",
    "new_seed",
    "params_to_request",
    "request_to_params",
    "to_generation_request",
    "ui_params",
]

MAX_SEED = 2**32 - 1
"""The largest `--seed`; grids use `seed + i` modulo 2**32 for their cells."""


def new_seed() -> int:
    """A fresh random seed, for a prompt without `--seed` and for every variation and re-roll."""
    return secrets.randbelow(MAX_SEED + 1)


def to_generation_request(request: Request, *, seed: int) -> GenerationRequest:
    """A text-to-image grid job for `request`, run with `seed` (the prompt's `--seed`, else `new_seed()`).

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


def request_to_params(request: GenerationRequest, *, init: str | None = None, **ui: Any) -> dict[str, Any]:
    """The JSON-able `params` of a job row: the request (minus its source image), the source image
    relative to the data dir (`init`), and how to show the job (`ui`)."""
    return {"request": request.to_dict(), "init": init, "ui": ui}


def params_to_request(params: dict[str, Any], data_dir: Path) -> GenerationRequest:
    """Rebuild the engine request a job row stores (the source image path made absolute)."""
    init = params.get("init")
    return GenerationRequest.from_dict(params["request"], init_image=data_dir / init if init else None)


def ui_params(job: Job) -> dict[str, Any]:
    """How the job is shown (`variation`, `source_url`), as `request_to_params` stored it."""
    return dict((job.params or {}).get("ui") or {})
