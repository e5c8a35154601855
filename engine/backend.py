"""The one small protocol every generation backend implements.

A backend is called from a worker thread, never on the event loop. It reports progress through a
plain callback and checks `cancelled` between denoising steps. When it has a safety checker
(`engine.safety`), it checks an image prompt's start picture before generating and every image it
makes after, and says so in the result (`GenerationResult.flagged`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from engine.types import GenerationRequest, GenerationResult, Progress

__all__ = ["Backend", "ProgressCallback"]

ProgressCallback = Callable[[Progress], None]


@runtime_checkable
class Backend(Protocol):
    """Turns a request into images, synchronously, on its device."""

    name: str
    edits: bool
    """Whether it can paint new or chosen areas (`Mode.EDIT`: Zoom Out, Pan, Make Square, Vary (Region));
    a backend that cannot refuses an edit with `GenerationError` (`engine.edits.CANNOT_PAINT`)."""

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
