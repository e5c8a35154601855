"""Small test classifiers for the safety-check seam (`IMAGINE_SAFETY_CHECKER=tests.safety_checkers:...`).

They judge by colour, which a test can steer: the simulated engine paints each image one colour from
its seed (red = seed * 67 % 256), and a start picture is whatever the test draws.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from PIL import Image, ImageStat

__all__ = ["RED_THRESHOLD", "RedChecker", "flag_everything", "flag_nothing", "flag_red", "mean_red"]

RED_THRESHOLD = 128.0


def mean_red(image: Image.Image) -> float:
    return float(ImageStat.Stat(image.convert("RGB")).mean[0])


class RedChecker:
    """Flags images whose mean red channel is above `threshold`; remembers how many images it saw per call."""

    def __init__(self, threshold: float = RED_THRESHOLD, *, name: str = "red-test") -> None:
        self.name = name
        self.threshold = threshold
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def flagged(self, images: Sequence[Image.Image]) -> list[bool]:
        with self._lock:
            self.calls.append(len(images))
        return [mean_red(image) > self.threshold for image in images]


def flag_red() -> RedChecker:
    """Flags images whose mean red is above 128 (in a simulated grid made `--seed 2`: cells 1 and 2)."""
    return RedChecker()


def flag_everything() -> RedChecker:
    return RedChecker(-1.0, name="flag-everything-test")


def flag_nothing() -> RedChecker:
    return RedChecker(256.0, name="flag-nothing-test")
