"""`SoftMask` on the trained tiny model's inpainting pipeline: the mask the pipeline blends by changes step
by step as the strengths say, and each latent moves away from the source's as far as its strength allows
(compared in latent space: the tiny VAE's decoder spreads each latent over its neighbours)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from engine.backends._soft_mask import SoftMask
from engine.backends.diffusion import DiffusersBackend

STEPS = 10


def _source() -> Image.Image:
    """White squares on green, as the tiny model draws them."""
    image = Image.new("RGB", (64, 64), (40, 170, 60))
    draw = ImageDraw.Draw(image)
    for left, top in ((6, 8), (36, 30), (10, 40)):
        draw.rectangle((left, top, left + 16, top + 16), fill=(245, 245, 245))
    return image


def _strengths() -> np.ndarray:
    """Per latent (8×8): the left three columns kept, the next two at 0.3, the right three afresh."""
    strengths = np.zeros((8, 8), dtype=np.float32)
    strengths[:, 3:5] = 0.3
    strengths[:, 5:] = 1.0
    return strengths


def _paint(tiny: DiffusersBackend, soft: SoftMask, masks: list[torch.Tensor]) -> torch.Tensor:
    """The final latents (channels × rows × cols) of one inpainting call (seed 3) blended by `soft`."""

    def callback(pipe: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        soft(pipe, i, tensors)
        masks.append(tensors["mask"].clone())
        return tensors

    (latents,) = tiny.model.inpaint(
        prompt="a red square on a green background",
        image=_source(),
        mask_image=soft.first(),
        strength=1.0,
        num_inference_steps=STEPS,
        guidance_scale=3.5,
        width=64,
        height=64,
        generator=torch.Generator("cpu").manual_seed(3),
        callback_on_step_end=callback,
        callback_on_step_end_tensor_inputs=list(SoftMask.TENSORS),
        output_type="latent",
    ).images
    return latents


@pytest.fixture(scope="module")
def painted(tiny: DiffusersBackend) -> tuple[torch.Tensor, list[torch.Tensor]]:
    masks: list[torch.Tensor] = []
    return _paint(tiny, SoftMask(_strengths(), 8), masks), masks


def test_the_first_mask_paints_only_what_starts_afresh() -> None:
    first = np.asarray(SoftMask(_strengths(), 8).first())
    assert first.shape == (64, 64)
    assert first[:, 40:].min() == 255
    assert first[:, :40].max() == 0


def test_the_pipeline_blends_by_a_mask_that_grows_as_the_steps_go(
    painted: tuple[torch.Tensor, list[torch.Tensor]],
) -> None:
    _, masks = painted
    assert len(masks) == STEPS
    for i, mask in enumerate(masks):
        step = i + 1  # the callback after step i sets the mask of step i + 1
        assert mask.shape == (2, 1, 8, 8)  # the image and its unconditioned twin (guidance)
        values = mask[0, 0].numpy()
        assert values[:, 5:].min() == 1.0
        assert values[:, :3].max() == 0.0
        # 0.3 is painted in the last 30 % of the steps: 7, 8 and 9 of 0–9
        assert np.all(values[:, 3:5] == (1.0 if step >= 7 else 0.0)), step


def test_each_latent_moves_from_the_source_as_far_as_its_strength_allows(
    tiny: DiffusersBackend, painted: tuple[torch.Tensor, list[torch.Tensor]]
) -> None:
    latents, _ = painted
    # Nothing painted: the source's own latents (the same seed encodes the source the same way).
    source = _paint(tiny, SoftMask(np.zeros((8, 8), dtype=np.float32), 8), [])
    moved = (latents - source).abs().mean(dim=0).numpy()  # per latent (channels × rows × cols)
    kept, softly, afresh = moved[:, :3], moved[:, 3:5], moved[:, 5:]
    assert kept.max() == 0.0  # strength 0: the source's latents exactly
    assert softly.min() > 0.0  # 0.3: painted for the last three steps
    assert afresh.mean() > 1.5 * softly.mean()  # 1: painted from pure noise (measured 1.03 against 0.50)
