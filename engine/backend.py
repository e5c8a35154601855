"""The one small protocol every generation backend implements.

A backend is called from a worker thread, never on the event loop. It reports progress through a
plain callback and checks `cancelled` between denoising steps. When it has a safety checker
(`engine.safety`), it checks an image prompt's start picture before generating and every image it
makes after, and says so in the result (`GenerationResult.flagged`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from engine.types import GenerationRequest, GenerationResult, Progress

__all__ = ["PARAMETERS", "Backend", "Capabilities", "Engine", "ProgressCallback"]

ProgressCallback = Callable[[Progress], None]

PARAMETERS = frozenset(
    {"aspect", "no", "chaos", "stylize", "quality", "stop", "tile", "iw", "seed", "steps", "cfg", "sampler"}
)
"""The prompt parameters an engine may honour, by their long names (`--aspect` is `--ar`, `--quality`
is `--q`, ...)."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an engine can do, known from the model's name without loading it: the bot refuses a
    parameter the engine can't honour and hides the buttons it can't serve."""

    engine: str
    """The engine as members see it named in messages: `diffusers`, `OpenAI gpt-image-1`, `GAN gan-tiny`."""
    honours: frozenset[str] = PARAMETERS
    """The parameters of `PARAMETERS` it honours; a prompt giving any other is refused, naming the engine."""
    edits: bool = True
    """Whether it can paint new or chosen areas (Zoom Out, Pan, Make Square, Vary (Region))."""
    image_prompts: bool = True
    """Whether it can start from a member's pictures (image prompts, `/blend`)."""
    hosted: bool = False
    """A paid API makes its images: the ledger counts them apart, and `/quota` can cap them per day."""


class Engine(Protocol):
    """A kind of backend, chosen by the scheme of `IMAGINE_MODEL` (`openai:gpt-image-1` → `openai`).
    Built-in ones and third-party ones (the `imaginebot.backends` entry-point group, name = scheme)
    are the same kind of object."""

    def capabilities(self, spec: str) -> Capabilities:
        """What the backend for `spec` (the whole model name) will do; cheap, loads nothing."""
        ...

    def load(self, spec: str, *, device: str, safety_checker: str) -> Backend:
        """Load the backend for `spec`; raise `ModelLoadError` with one sentence on how to fix it."""
        ...


@runtime_checkable
class Backend(Protocol):
    """Turns a request into images, synchronously, on its device."""

    name: str

    @property
    def capabilities(self) -> Capabilities:
        """What its default model honours and can do, as its engine's `Engine.capabilities` says; a
        backend that cannot paint (`edits=False`) refuses `Mode.EDIT` with `GenerationError`
        (`engine.edits.CANNOT_PAINT`)."""
        ...

    @property
    def checker(self) -> str | None:
        """The name of the safety checker its (default model's) images go through; None = none."""
        ...

    def generate(
        self,
        request: GenerationRequest,
        *,
        on_progress: ProgressCallback,
        cancelled: threading.Event,
    ) -> GenerationResult:
        """Run one job. Raise `JobCancelled` when `cancelled` is set, `GenerationError` on failure."""
        ...

    def close(self) -> None:
        """Free the device memory this backend holds."""
        ...
