"""The pictures a member starts a job from, kept in the data dir so no job needs them fetched twice.

Each fetched picture is saved once as `sources/<sha256>.png`, named by the SHA-256 of the file as it
was downloaded (the recipe names it the same way). What the engine starts from is one image per
prompt and aspect ratio, `sources/start-<key>.png`: every picture cropped around its centre to the
grid's aspect ratio (nothing is squashed; the edges of the long side go), then averaged pixel by
pixel when there are several. A re-roll, a restart or `/show` reads these files again; the links
the pictures came from may be gone by then.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from bot.fetch import FetchedImage
from engine.images import write_atomically

__all__ = [
    "KEPT_SIDE",
    "SOURCES_DIR",
    "START_SIDE",
    "StartImage",
    "fit_to_ratio",
    "keep_sources",
    "load_sources",
    "source_path",
    "start_image",
]

SOURCES_DIR = "sources"
"""Under the data dir."""
START_SIDE = 1024
"""The long side of a start image; the engine scales it to the grid's size."""
KEPT_SIDE = 2048
"""The long side a kept picture is shrunk to (a 40-megapixel photo need not be kept whole)."""


@dataclass(frozen=True, slots=True)
class StartImage:
    """What an image-prompt job starts from: its file (relative to the data dir) and its pictures."""

    path: str
    sources: tuple[str, ...]
    """SHA-256 of each picture, in prompt order."""


def fit_to_ratio(
    picture: Image.Image, aspect_ratio: tuple[int, int], long_side: int = START_SIDE
) -> Image.Image:
    """`picture` cropped around its centre to `aspect_ratio`, scaled so its long side is `long_side`."""
    a, b = aspect_ratio
    size = (
        (long_side, max(1, round(long_side * b / a)))
        if a >= b
        else (max(1, round(long_side * a / b)), long_side)
    )
    return ImageOps.fit(picture, size, Image.Resampling.LANCZOS)


def _blend(pictures: Sequence[Image.Image]) -> Image.Image:
    if len(pictures) == 1:
        return pictures[0]
    mean = np.mean([np.asarray(picture, dtype=np.float32) for picture in pictures], axis=0)
    return Image.fromarray(np.clip(mean + 0.5, 0, 255).astype(np.uint8), "RGB")


def _write_png(path: Path, image: Image.Image) -> None:
    """Write once: a file of this name already holds the same picture."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    data = io.BytesIO()
    image.save(data, format="PNG")
    write_atomically(path, data.getvalue())


def source_path(data_dir: Path, sha256: str) -> Path:
    return data_dir / SOURCES_DIR / f"{sha256}.png"


def keep_sources(data_dir: Path, pictures: Sequence[FetchedImage]) -> dict[str, Image.Image]:
    """Save each fetched picture as `sources/<sha256>.png`, its long side at most `KEPT_SIDE`;
    return them by SHA-256 as kept (blocking: call it off the event loop)."""
    kept: dict[str, Image.Image] = {}
    for picture in pictures:
        image = picture.image
        if max(image.size) > KEPT_SIDE:
            image = image.copy()
            image.thumbnail((KEPT_SIDE, KEPT_SIDE), Image.Resampling.LANCZOS)
        _write_png(source_path(data_dir, picture.sha256), image)
        kept[picture.sha256] = image
    return kept


def load_sources(data_dir: Path, sources: Sequence[str]) -> dict[str, Image.Image] | None:
    """The kept pictures `sources` (SHA-256s) by SHA-256, or None when one is gone (blocking)."""
    loaded: dict[str, Image.Image] = {}
    for sha in sources:
        try:
            with Image.open(source_path(data_dir, sha)) as image:
                loaded[sha] = image.convert("RGB")
        except OSError:
            return None
    return loaded


def start_image(
    data_dir: Path, sources: Sequence[str], pictures: Mapping[str, Image.Image], aspect_ratio: tuple[int, int]
) -> StartImage:
    """The start image of the pictures `sources` (SHA-256s, in prompt order) at `aspect_ratio`, saved
    under `sources/` unless it already is (blocking)."""
    key = hashlib.sha256(f"{' '.join(sources)} {aspect_ratio[0]}:{aspect_ratio[1]}".encode()).hexdigest()[:32]
    relative = f"{SOURCES_DIR}/start-{key}.png"
    path = data_dir / relative
    if not path.exists():
        _write_png(path, _blend([fit_to_ratio(pictures[sha], aspect_ratio) for sha in sources]))
    return StartImage(relative, tuple(sources))
