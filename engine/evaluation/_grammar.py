"""The shapes prompts the evaluation uses: labels, a seeded prompt set, a parser and the dataset's pictures.

A prompt's labels are what the classifier reads back from a picture: the background colour, the
shape's kind and the shape's colour. Prompts follow the captions of `engine.tiny.data` (one group of
shapes); anything else parses to None and is generated and measured for FID/IS, but not for adherence.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from PIL import Image

from engine.tiny.data import COLOURS, COUNT_WORDS, POSITIONS, SHAPES, SIZES, Scene, Shape, draw, random_scene

__all__ = [
    "BACKGROUNDS",
    "KINDS",
    "SHAPE_COLOURS",
    "Labels",
    "draw_labels",
    "draw_scene",
    "one_group_scene",
    "parse_prompt",
    "prompt_for",
    "shapes_prompts",
]

BACKGROUNDS: tuple[str, ...] = tuple(COLOURS)
"""Classes of the background head, in head order."""
KINDS: tuple[str, ...] = SHAPES
"""Classes of the shape-kind head, in head order."""
SHAPE_COLOURS: tuple[str, ...] = tuple(COLOURS)
"""Classes of the shape-colour head, in head order."""


@dataclass(frozen=True, slots=True)
class Labels:
    """What a single-shape prompt asks for, and what the classifier reads from a picture."""

    background: str
    kind: str
    colour: str


def prompt_for(labels: Labels) -> str:
    """The canonical prompt for `labels`: "a red circle on a blue background"."""
    return f"a {labels.colour} {labels.kind} on a {labels.background} background"


def shapes_prompts(count: int, *, seed: int = 0) -> list[str]:
    """`count` seeded prompts with one shape whose colour differs from the background's.

    Every (background, kind, colour) combination appears once before any appears twice, so a few
    hundred prompts cover the grammar evenly.
    """
    rng = random.Random(seed)
    combos = [
        Labels(background, kind, colour)
        for background in BACKGROUNDS
        for kind in KINDS
        for colour in SHAPE_COLOURS
        if colour != background
    ]
    prompts: list[str] = []
    while len(prompts) < count:
        rng.shuffle(combos)
        prompts.extend(prompt_for(labels) for labels in combos[: count - len(prompts)])
    return prompts


_COLOUR = "|".join(COLOURS)
_SUBJECT = (
    rf"(?:{'|'.join(COUNT_WORDS.values())}|an)\s+"
    rf"(?:(?:{'|'.join(SIZES)})\s+)?"
    rf"(?P<colour>{_COLOUR})\s+(?P<kind>{'|'.join(SHAPES)})s?"
    rf"(?:\s+(?:{'|'.join(re.escape(p) for p in POSITIONS)}))?"
)
_FORMS = (
    re.compile(rf"{_SUBJECT}\s+on\s+(?:an?\s+)?(?P<background>{_COLOUR})(?:\s+background)?"),
    re.compile(rf"(?:an?\s+)?(?P<background>{_COLOUR})\s+background\s+with\s+{_SUBJECT}"),
)


def parse_prompt(text: str) -> Labels | None:
    """The labels of a one-group shapes prompt in the dataset's phrasings, or None when it is anything else.

    "a red circle on a blue background", "two small green squares on black" and "white background
    with a big pink triangle" parse; "a red circle and a blue square on white", "a lighthouse" and
    a prompt that names no background do not.
    """
    words = " ".join(text.lower().replace(",", " ").split())
    for form in _FORMS:
        match = form.fullmatch(words)
        if match is not None:
            return Labels(match["background"], match["kind"], match["colour"])
    return None


def one_group_scene(rng: random.Random) -> Scene:
    """A random dataset scene with one group of shapes (the scenes whose labels are known)."""
    while True:
        scene = random_scene(rng)
        if len(scene.groups) == 1:
            return scene


def draw_labels(labels: Labels, rng: random.Random, *, width: int = 64, height: int = 64) -> Image.Image:
    """A dataset picture of `labels` at `width`×`height`: one shape of a random size and place."""
    size = rng.choice((None, None, "small", "big"))
    position = rng.choice([None, None, *POSITIONS])
    if position is None:
        centre = (rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8))
    else:
        x, y = POSITIONS[position]
        centre = (x + rng.uniform(-0.04, 0.04), y + rng.uniform(-0.04, 0.04))
    scene = Scene(labels.background, (Shape(labels.kind, labels.colour, 1, size, position),), (centre,))
    return draw_scene(scene, rng, width=width, height=height)


def draw_scene(scene: Scene, rng: random.Random, *, width: int = 64, height: int = 64) -> Image.Image:
    """`scene` at `width`×`height`: drawn square at the short side, placed at random along the long one.

    Shapes keep their size relative to the short side and their true proportions, as a model that
    draws a wider canvas of the same scene would; the rest of the canvas is background.
    """
    side = min(width, height)
    square = draw(scene, side)
    if width == height:
        return square
    canvas = Image.new("RGB", (width, height), COLOURS[scene.background])
    canvas.paste(square, (rng.randint(0, width - side), rng.randint(0, height - side)))
    return canvas
