"""Prompt adherence: the shapes network reads each picture, and the reading is checked against its prompt."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from engine.evaluation._grammar import BACKGROUNDS, KINDS, SHAPE_COLOURS, Labels, parse_prompt
from engine.evaluation._network import load_network, to_tensor

__all__ = ["Adherence", "adherence", "classify"]

_BATCH = 100


@dataclass(frozen=True, slots=True)
class Adherence:
    """Per-attribute accuracy over the pictures whose prompt the grammar parses (None when none did)."""

    scored: int
    """Pictures whose prompt parsed, so they were scored."""
    skipped: int
    """Pictures whose prompt is not a one-group shapes prompt."""
    background: float | None
    kind: float | None
    colour: float | None
    all_three: float | None
    """Pictures with the background, the kind and the colour all right."""


def classify(images: Sequence[Image.Image]) -> list[Labels]:
    """What the shapes network reads in each picture: background colour, shape kind, shape colour."""
    by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, image in enumerate(images):
        by_size[image.size].append(index)
    network = load_network()
    readings: list[Labels | None] = [None] * len(images)
    with torch.no_grad():
        for indices in by_size.values():
            for start in range(0, len(indices), _BATCH):
                chunk = indices[start : start + _BATCH]
                background, kind, colour = network(to_tensor([images[i] for i in chunk]))
                for row, i in enumerate(chunk):
                    readings[i] = Labels(
                        BACKGROUNDS[int(background[row].argmax())],
                        KINDS[int(kind[row].argmax())],
                        SHAPE_COLOURS[int(colour[row].argmax())],
                    )
    return [reading for reading in readings if reading is not None]


def adherence(images: Sequence[Image.Image], prompts: Sequence[str]) -> Adherence:
    """How often each picture shows what its prompt (one per picture) names, attribute by attribute."""
    if len(images) != len(prompts):
        raise ValueError(f"one prompt per picture: got {len(images)} pictures and {len(prompts)} prompts")
    wanted = [parse_prompt(prompt) for prompt in prompts]
    scored = [(image, labels) for image, labels in zip(images, wanted, strict=True) if labels is not None]
    if not scored:
        return Adherence(0, len(images), None, None, None, None)
    readings = classify([image for image, _ in scored])
    pairs = list(zip(readings, (labels for _, labels in scored), strict=True))
    count = len(pairs)

    def share(hits: int) -> float:
        return hits / count

    return Adherence(
        scored=count,
        skipped=len(images) - count,
        background=share(sum(got.background == want.background for got, want in pairs)),
        kind=share(sum(got.kind == want.kind for got, want in pairs)),
        colour=share(sum(got.colour == want.colour for got, want in pairs)),
        all_three=share(sum(got == want for got, want in pairs)),
    )
