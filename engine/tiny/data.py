"""The synthetic captioned dataset the tiny model learns from: coloured shapes on coloured backgrounds.

Scenes are drawn with Pillow at twice the size and downsampled, so edges are smooth like a photo's
rather than aliased. Everything is driven by one `random.Random`, so a seed fixes the whole stream.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "COLOURS",
    "COUNT_WORDS",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "Scene",
    "Shape",
    "caption",
    "draw",
    "random_scene",
    "sample_batch",
]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (245, 220, 30),
    "orange": (245, 140, 20),
    "purple": (130, 40, 170),
    "pink": (245, 130, 190),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
    "brown": (120, 70, 30),
    "cyan": (40, 210, 220),
}
"""Colour words and the RGB the dataset paints them with."""

SHAPES = ("circle", "square", "triangle")
SIZES: dict[str, float] = {"small": 0.18, "big": 0.42}
"""Size words and the shape's diameter as a fraction of the image side; no word = medium (0.28)."""
MEDIUM_SIZE = 0.28
POSITIONS: dict[str, tuple[float, float]] = {
    "in the top left": (0.27, 0.27),
    "in the top right": (0.73, 0.27),
    "in the bottom left": (0.27, 0.73),
    "in the bottom right": (0.73, 0.73),
    "in the center": (0.5, 0.5),
    "on the left": (0.25, 0.5),
    "on the right": (0.75, 0.5),
    "at the top": (0.5, 0.25),
    "at the bottom": (0.5, 0.75),
}
"""Position phrases and the centre (fractions of the side) of a shape placed there."""
COUNT_WORDS = {1: "a", 2: "two", 3: "three"}

_SUPERSAMPLE = 2


@dataclass(frozen=True, slots=True)
class Shape:
    """One group in a scene: `count` shapes of one kind, colour and size."""

    kind: str
    colour: str
    count: int = 1
    size: str | None = None  # a key of SIZES, None = medium
    position: str | None = None  # a key of POSITIONS (only for a single shape), None = anywhere


@dataclass(frozen=True, slots=True)
class Scene:
    background: str
    groups: tuple[Shape, ...]
    centres: tuple[tuple[float, float], ...]
    """Where each drawn shape's centre lies, flattened over groups in order."""


def random_scene(rng: random.Random, *, one_group: float = 0.65) -> Scene:
    """Draw a random scene description: a background and one group of shapes (with probability
    `one_group`) or two."""
    background = rng.choice(list(COLOURS))
    others = [c for c in COLOURS if c != background]
    group_count = 1 if rng.random() < one_group else 2
    groups: list[Shape] = []
    for _ in range(group_count):
        count = rng.choices((1, 2, 3), weights=(6, 3, 2))[0]
        size = rng.choice((None, None, "small", "big")) if count == 1 else rng.choice((None, "small"))
        position = rng.choice([None, None, *POSITIONS]) if count == 1 and group_count == 1 else None
        groups.append(Shape(rng.choice(SHAPES), rng.choice(others), count, size, position))
    centres: list[tuple[float, float]] = []
    for group in groups:
        for _ in range(group.count):
            if group.position is not None:
                cx, cy = POSITIONS[group.position]
                centres.append((cx + rng.uniform(-0.04, 0.04), cy + rng.uniform(-0.04, 0.04)))
            else:
                centres.append(_free_spot(rng, centres))
    return Scene(background, tuple(groups), tuple(centres))


def _free_spot(rng: random.Random, taken: list[tuple[float, float]]) -> tuple[float, float]:
    # A few tries for a spot away from earlier shapes; overlap is allowed when the scene is crowded.
    best = (0.5, 0.5)
    best_gap = -1.0
    for _ in range(12):
        spot = (rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8))
        gap = min((abs(spot[0] - x) + abs(spot[1] - y) for x, y in taken), default=1.0)
        if gap > 0.45:
            return spot
        if gap > best_gap:
            best, best_gap = spot, gap
    return best


def caption(scene: Scene, rng: random.Random) -> str:
    """Describe a scene in one of the phrasings people type ("two yellow squares on black")."""
    parts = []
    for group in scene.groups:
        words = [COUNT_WORDS[group.count]]
        if group.size is not None:
            words.append(group.size)
        words.append(group.colour)
        words.append(group.kind + ("s" if group.count > 1 else ""))
        if group.position is not None:
            words.append(group.position)
        parts.append(" ".join(words))
    subject = " and ".join(parts)
    form = rng.random()
    if form < 0.5:
        return f"{subject} on a {scene.background} background"
    if form < 0.8:
        return f"{subject} on {scene.background}"
    if form < 0.9:
        return f"{scene.background} background with {subject}"
    return subject if rng.random() < 0.5 else f"a {scene.background} background"


def draw(scene: Scene, size: int = 64, *, width: int | None = None, height: int | None = None) -> Image.Image:
    """Paint a scene as an RGB image of `size`×`size`, or `width`×`height` when given.

    On a non-square canvas the centres are fractions of each side and shapes keep their size relative
    to the short side (a wide picture of "a big circle" has the circle as tall as a square one has).
    """
    width, height = width or size, height or size
    big_w, big_h = width * _SUPERSAMPLE, height * _SUPERSAMPLE
    image = Image.new("RGB", (big_w, big_h), COLOURS[scene.background])
    pen = ImageDraw.Draw(image)
    centres = iter(scene.centres)
    for group in scene.groups:
        fraction = SIZES.get(group.size or "", MEDIUM_SIZE)
        if group.count > 1:
            fraction *= 0.85  # several shapes have to fit side by side
        radius = fraction * min(big_w, big_h) / 2
        fill = COLOURS[group.colour]
        for _ in range(group.count):
            cx, cy = next(centres)
            x, y = cx * big_w, cy * big_h
            if group.kind == "circle":
                pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)
            elif group.kind == "square":
                side = radius * 0.9
                pen.rectangle((x - side, y - side, x + side, y + side), fill=fill)
            else:
                half, low = radius * 1.1, y + radius * 0.8
                pen.polygon([(x, y - radius), (x + half, low), (x - half, low)], fill=fill)
    return image.resize((width, height), Image.Resampling.BOX)


def sample_batch(
    rng: random.Random,
    batch_size: int,
    *,
    size: int = 64,
    width: int | None = None,
    height: int | None = None,
    caption_dropout: float = 0.0,
    one_group: float = 0.65,
) -> tuple[np.ndarray, list[str]]:
    """A batch of images as float32 NCHW in [-1, 1] and their captions ("" with `caption_dropout`).

    Images are `size`×`size`, or `width`×`height` when given; `one_group` is passed to `random_scene`.
    """
    width, height = width or size, height or size
    pixels = np.empty((batch_size, 3, height, width), dtype=np.float32)
    captions: list[str] = []
    for i in range(batch_size):
        scene = random_scene(rng, one_group=one_group)
        picture = draw(scene, width=width, height=height)
        pixels[i] = np.asarray(picture, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0
        text = caption(scene, rng)
        captions.append("" if rng.random() < caption_dropout else text)
    return pixels, captions
