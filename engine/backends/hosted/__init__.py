"""Hosted engines: the OpenAI Images API (`openai:<model>`) and servers that speak it.

Settings (`HostedSettings`): the API key and base URL (`OPENAI_API_KEY`, `OPENAI_BASE_URL`), how long one
call may take (`IMAGINE_HOSTED_TIMEOUT_S`, default 180 s) and how often the client retries a 429 or
5xx (`IMAGINE_HOSTED_RETRIES`, default 2, waiting what the server's `Retry-After` says). The bot passes
them from its configuration; without them they are read from the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.backend import Capabilities
from engine.backends.hosted._models import SCHEME, ModelSpec, parse_spec
from engine.errors import ModelLoadError
from engine.safety import MODEL, NONE, load_safety_checker

if TYPE_CHECKING:
    from engine.backends.hosted._backend import OpenAIImagesBackend

__all__ = ["ENGINE", "SCHEME", "HostedSettings", "OpenAIEngine"]


@dataclass(frozen=True, slots=True)
class HostedSettings:
    """How to reach a hosted engine; None = the `openai` package's own default (its environment)."""

    api_key: str | None = None
    base_url: str | None = None
    timeout_s: float = 180.0
    retries: int = 2

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> HostedSettings:
        """The settings as the environment gives them (for callers without the bot's configuration)."""
        return cls(
            api_key=environ.get("OPENAI_API_KEY") or None,
            base_url=environ.get("OPENAI_BASE_URL") or None,
            timeout_s=_number(environ, "IMAGINE_HOSTED_TIMEOUT_S", 180.0),
            retries=int(_number(environ, "IMAGINE_HOSTED_RETRIES", 2)),
        )


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = -1.0
    if value < 0:
        raise ModelLoadError(f"{name} must be a number of 0 or more; got {raw!r}.")
    return value


def _capabilities(spec: ModelSpec) -> Capabilities:
    honours = {"aspect"} | ({"quality"} if spec.profile.qualities else set())
    # Painting chosen areas would need masks drawn by the bot; not offered yet.
    return Capabilities(
        spec.engine, frozenset(honours), edits=False, image_prompts=spec.profile.edits, hosted=True
    )


class OpenAIEngine:
    """`openai:<model>[,max_n=N][,stream=false]`: the Images API's generations and edits endpoints."""

    def capabilities(self, spec: str) -> Capabilities:
        return _capabilities(parse_spec(spec))

    def load(
        self, spec: str, *, device: str, safety_checker: str, settings: HostedSettings | None = None
    ) -> OpenAIImagesBackend:
        """Make the client and ask the API about the model once (a bad key or URL fails here)."""
        from engine.backends.hosted._backend import OpenAIImagesBackend

        parsed = parse_spec(spec)
        settings = settings or HostedSettings.from_environment()
        # The provider moderates; `model` (the default) means its moderation alone.
        checker = None if safety_checker in (MODEL, NONE) else load_safety_checker(safety_checker)
        backend = OpenAIImagesBackend(
            parsed,
            _capabilities(parsed),
            api_key=settings.api_key,
            base_url=settings.base_url,
            timeout_s=settings.timeout_s,
            max_retries=settings.retries,
            safety_checker=checker,
        )
        try:
            backend.check_access()
        except BaseException:
            backend.close()
            raise
        return backend


ENGINE = OpenAIEngine()
