"""The latest progress a device thread reported, handed to the event loop with one wakeup per burst."""

from __future__ import annotations

import threading

from engine.types import Progress

__all__ = ["LatestProgress"]


class LatestProgress:
    """A device thread `put`s progress as fast as it comes; the event loop `take`s the latest. The loop
    is asked to wake only when nobody is taking yet, so a burst of steps costs one wakeup, and a reader
    that falls behind skips to the newest step (latest wins)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: Progress | None = None
        self._taking = False

    def put(self, progress: Progress) -> bool:
        """Keep `progress` (any thread); True if the caller must get the loop to start taking."""
        with self._lock:
            self._latest = progress
            if self._taking:
                return False
            self._taking = True
            return True

    def take(self) -> Progress | None:
        """The latest progress not taken yet; None, when there is none, also ends this round of taking."""
        with self._lock:
            progress, self._latest = self._latest, None
            if progress is None:
                self._taking = False
            return progress
