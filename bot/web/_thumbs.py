"""WebP thumbnails of stored images: made once, in one process of their own, cached in the data dir.

One worker, not a pool: a gallery full of new images then takes one core at most while it catches up,
and generation, Discord and the event loop keep the rest. A process rather than a thread: decoding and
encoding hold Python's lock in places, and the bot's event loop must not wait for it
(bench/gallery.py measures the loop while thumbnails are made).
"""

from __future__ import annotations

import asyncio
import enum
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

__all__ = ["Size", "Thumbnails"]


class Size(enum.StrEnum):
    """A thumbnail's size; its value is the URL's and the file name's part."""

    CARD = "t"
    """A gallery card: 384 px on the long side."""
    PAGE = "m"
    """A job page's main picture: 1024 px on the long side."""

    @property
    def side(self) -> int:
        return 384 if self is Size.CARD else 1024


class Thumbnails:
    """`await thumbnails.get(source, key, size)` → the WebP file's path, made on first use."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        # forkserver: the worker starts from a clean process, not a fork of the bot's threads and model.
        self._executor = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("forkserver")
        )
        self._making: dict[Path, asyncio.Future[Path]] = {}

    def start(self) -> None:
        """Start the worker process now and wait until it is ready (slow: call it in a thread), so that a
        first visitor's thumbnail does not hold up the event loop while a process starts."""
        self._executor.submit(os.getpid).result()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def get(self, source: Path, key: str, size: Size) -> Path:
        """The thumbnail of `source` at `size`, named by `key` (a job id and cell: unique per image)."""
        target = self._folder / key[:2] / f"{key}-{size.value}.webp"
        if target.exists():
            return target
        making = self._making.get(target)
        if making is None:  # the first asker makes it; others at the same time wait for that one
            loop = asyncio.get_running_loop()
            making = asyncio.ensure_future(
                loop.run_in_executor(self._executor, _make, source, target, size.side)
            )
            self._making[target] = making
            making.add_done_callback(lambda _: self._making.pop(target, None))
        return await asyncio.shield(making)


def _make(source: Path, target: Path, side: int) -> Path:
    if target.exists():
        return target
    with Image.open(source) as image:
        image.draft("RGB", (side, side))  # JPEG sources decode at a lower scale; PNGs ignore it
        picture = image.convert("RGB")
    picture.thumbnail((side, side), Image.Resampling.LANCZOS)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part")
    picture.save(partial, format="WEBP", quality=82, method=4)
    os.replace(partial, target)  # never a half-written thumbnail under the final name
    return target
