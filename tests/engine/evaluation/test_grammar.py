"""The shapes prompts: the seeded set, the parser against the dataset's captions, pictures at any aspect."""

from __future__ import annotations

import random

import numpy as np
import pytest

from engine.evaluation import (
    BACKGROUNDS,
    KINDS,
    SHAPE_COLOURS,
    Labels,
    draw_labels,
    parse_prompt,
    prompt_for,
    shapes_prompts,
)
from engine.tiny.data import COLOURS, caption, random_scene


def test_shapes_prompts_are_seeded_and_cover_every_combination_once() -> None:
    everything = len(BACKGROUNDS) * len(KINDS) * (len(SHAPE_COLOURS) - 1)
    prompts = shapes_prompts(everything, seed=3)
    assert prompts == shapes_prompts(everything, seed=3)
    assert prompts != shapes_prompts(everything, seed=4)
    labels = [parse_prompt(prompt) for prompt in prompts]
    assert all(label is not None and label.colour != label.background for label in labels)
    assert len(set(labels)) == everything  # each (background, kind, colour) once
    assert len(shapes_prompts(everything + 5, seed=3)) == everything + 5


def test_the_parser_reads_the_dataset_captions_of_one_group_and_nothing_else() -> None:
    rng = random.Random(7)
    parsed = 0
    for _ in range(3000):
        scene = random_scene(rng)
        text = caption(scene, rng)
        names_background = scene.background in text.split() and len(text.split()) > 3
        labels = parse_prompt(text)
        if len(scene.groups) == 1 and names_background:
            group = scene.groups[0]
            assert labels == Labels(scene.background, group.kind, group.colour), text
            parsed += 1
        else:
            assert labels is None, text
    assert parsed > 1000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a red circle on a blue background", Labels("blue", "circle", "red")),
        ("  A Red Circle on BLUE ", Labels("blue", "circle", "red")),
        ("an orange square on a white background", Labels("white", "square", "orange")),
        ("black background with three small cyan triangles", Labels("black", "triangle", "cyan")),
        ("a big pink circle in the top left on a gray background", Labels("gray", "circle", "pink")),
        ("a red circle", None),
        ("a blue background", None),
        ("a red circle and a blue square on white", None),
        ("a lighthouse at dusk", None),
        ("a red fox on a blue background", None),
    ],
)
def test_parse_prompt(text: str, expected: Labels | None) -> None:
    assert parse_prompt(text) == expected


def test_prompt_for_round_trips() -> None:
    labels = Labels("blue", "triangle", "yellow")
    assert prompt_for(labels) == "a yellow triangle on a blue background"
    assert parse_prompt(prompt_for(labels)) == labels


@pytest.mark.parametrize(("width", "height"), [(64, 64), (96, 64), (64, 96), (80, 56)])
def test_drawn_pictures_have_the_size_and_the_colours_asked_for(width: int, height: int) -> None:
    labels = Labels("green", "square", "yellow")
    image = draw_labels(labels, random.Random(0), width=width, height=height)
    assert image.size == (width, height)
    pixels = np.asarray(image).reshape(-1, 3)
    assert tuple(pixels[0]) == COLOURS["green"]  # a corner is background
    colours = {tuple(p) for p in pixels}
    assert COLOURS["yellow"] in colours
