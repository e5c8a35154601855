"""A job's three forms: the parsed prompt (`bot.prompt.Request`), what the engine generates
(`GenerationRequest`), and the JSON a job row keeps in `params` to run it again after a restart.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from bot.prompt import Request
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


def to_generation_request(
    request: Request, *, seed: int, init_image: Path | None = None, sources: tuple[str, ...] = ()
) -> GenerationRequest:
    """The grid job for `request`, run with `seed` (the prompt's `--seed`, else `new_seed()`).

    A prompt with pictures (`request.image_prompts`) starts from `init_image`, the start image made
    from them (`bot.jobs.sources`), whose SHA-256s are `sources`; one without is text-to-image.
    """
    if bool(request.image_prompts) != (init_image is not None) or len(sources) != len(request.image_prompts):
        raise ValueError("an image prompt needs its start image and one source per picture, and only it")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be between 0 and {MAX_SEED}; got {seed}")
    return GenerationRequest(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        weighted_prompts=tuple(WeightedPrompt(part.text, part.weight) for part in request.parts),
        aspect_ratio=request.aspect_ratio,
        seed=seed,
        mode=Mode.IMAGE if init_image is not None else Mode.TEXT,
        init_image=init_image,
        image_weight=request.image_weight,
        sources=sources,
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
