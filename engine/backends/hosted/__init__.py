"""Hosted engines: the OpenAI Images API (`openai:<model>`) and servers that speak it.

`OPENAI_API_KEY` and `OPENAI_BASE_URL` (for a compatible server) are read as the `openai` package
reads them; `IMAGINE_HOSTED_TIMEOUT_S` bounds one API call (default 180 s) and
`IMAGINE_HOSTED_RETRIES` how often the client retries a 429 or 5xx (default 2, waiting what the
server's `Retry-After` says).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from engine.backend import Capabilities
from engine.backends.hosted._models import SCHEME, ModelSpec, parse_spec
from engine.errors import ModelLoadError
from engine.safety import MODEL, NONE, load_safety_checker

if TYPE_CHECKING:
    from engine.backends.hosted._backend import OpenAIImagesBackend

__all__ = ["ENGINE", "SCHEME", "OpenAIEngine"]


def _capabilities(spec: ModelSpec) -> Capabilities:
    honours = {"aspect"} | ({"quality"} if spec.profile.qualities else set())
    # Painting chosen areas would need masks drawn by the bot; not offered yet.
    return Capabilities(
        spec.engine, frozenset(honours), edits=False, image_prompts=spec.profile.edits, hosted=True
    )


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = -1.0
    if value < 0:
        raise ModelLoadError(f"{name} must be a number of 0 or more; got {raw!r}.")
    return value


class OpenAIEngine:
    """`openai:<model>[,max_n=N][,stream=false]`: the Images API's generations and edits endpoints."""

    def capabilities(self, spec: str) -> Capabilities:
        return _capabilities(parse_spec(spec))

    def load(self, spec: str, *, device: str, safety_checker: str) -> OpenAIImagesBackend:
        from engine.backends.hosted._backend import OpenAIImagesBackend

        parsed = parse_spec(spec)
        # The provider moderates; `model` (the default) means its moderation alone.
        checker = None if safety_checker in (MODEL, NONE) else load_safety_checker(safety_checker)
        backend = OpenAIImagesBackend(
            parsed,
            _capabilities(parsed),
            timeout_s=_number("IMAGINE_HOSTED_TIMEOUT_S", 180.0),
            max_retries=int(_number("IMAGINE_HOSTED_RETRIES", 2)),
            safety_checker=checker,
        )
        try:
            backend.check_access()
        except BaseException:
            backend.close()
            raise
        return backend


ENGINE = OpenAIEngine()
