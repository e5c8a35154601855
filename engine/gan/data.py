"""Training batches for the GAN: the tiny model's coloured-shapes scenes at several aspects, with labels.

Pictures are `engine.tiny.data.draw`'s at each canvas size: on a wider or taller canvas the centres
stretch over the canvas and sizes come from the short side, so "on the left" is still on the left and
a circle stays round. The labels (background colour, the (shape, colour)
pairs) come from the scene, masked to what the caption mentions; they train the discriminator's
auxiliary heads, never the generator's input, which is the caption alone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from engine.tiny.data import COLOURS, SHAPES, caption, draw, random_scene

__all__ = ["BACKGROUNDS", "PAIRS", "Batch", "sample"]

BACKGROUNDS = len(COLOURS)
PAIRS = len(SHAPES) * len(COLOURS)
_COLOUR_INDEX = {name: i for i, name in enumerate(COLOURS)}


@dataclass(frozen=True, slots=True)
class Batch:
    pixels: torch.Tensor
    """N × 3 × H × W in [-1, 1]."""
    captions: list[str]
    background: torch.Tensor
    """Index into COLOURS of each background, -1 where the caption does not name it."""
    pairs: torch.Tensor
    """N × PAIRS multi-hot of the (shape, colour) pairs drawn."""
    pairs_named: torch.Tensor
    """N booleans: whether the caption names the shapes (else `pairs` is not asked of the generator)."""


def sample(rng: random.Random, batch_size: int, width: int, height: int) -> Batch:
    """`batch_size` fresh scenes at `width`×`height` with their captions and labels."""
    pixels = np.empty((batch_size, 3, height, width), dtype=np.float32)
    captions: list[str] = []
    background = torch.full((batch_size,), -1, dtype=torch.long)
    pairs = torch.zeros((batch_size, PAIRS))
    named = torch.zeros(batch_size, dtype=torch.bool)
    for i in range(batch_size):
        scene = random_scene(rng)
        pixels[i] = (
            np.asarray(draw(scene, width=width, height=height), dtype=np.float32).transpose(2, 0, 1) / 127.5
            - 1
        )
        text = caption(scene, rng)
        words = text.split()
        captions.append(text)
        # Shape colours never equal the background's, so its word appears only when the caption names it.
        if scene.background in words:
            background[i] = _COLOUR_INDEX[scene.background]
        named[i] = any(word.rstrip("s") in SHAPES for word in words)
        for group in scene.groups:
            pairs[i, SHAPES.index(group.kind) * len(COLOURS) + _COLOUR_INDEX[group.colour]] = 1.0
    return Batch(torch.from_numpy(pixels), captions, background, pairs, named)
