"""The SDXL code paths (two text encoders, pooled embeddings, SDXL image-to-image) on a tiny random SDXL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from engine.backends._conditioning import conditioning_kwargs, prompt_sides
from engine.backends._family import FamilyKind
from engine.backends.diffusion import DiffusersBackend
from engine.tiny import TOKENIZER_DIR
from engine.tiny.architecture import load_tokenizer
from engine.types import GenerationRequest, Mode, WeightedPrompt
from tests.engine.backends.conftest import run_job


def _tiny_sdxl() -> Any:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=64,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
    )
    config = CLIPTextConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=32,
        vocab_size=1000,
    )
    tokenizer = load_tokenizer(TOKENIZER_DIR)
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(config),
        text_encoder_2=CLIPTextModelWithProjection(config),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sdxl() -> DiffusersBackend:
    return DiffusersBackend.from_pipeline(_tiny_sdxl(), "tiny/sdxl-turbo")


def test_sdxl_turbo_is_detected(sdxl: DiffusersBackend) -> None:
    family = sdxl.model.family
    assert (family.kind, family.turbo, family.native_size, family.default_steps) == (
        FamilyKind.SDXL,
        True,
        64,
        2,
    )


@torch.no_grad()
def test_weighted_parts_blend_text_and_pooled_embeddings(sdxl: DiffusersBackend) -> None:
    pipe = sdxl.model.text2img
    request = GenerationRequest(
        "red circle blue",
        weighted_prompts=(WeightedPrompt("red circle", 3.0), WeightedPrompt("blue", 1.0)),
    )
    kwargs = conditioning_kwargs(pipe, prompt_sides(request), seeds=(1, 2), chaos=0, guidance=False)
    red = pipe.encode_prompt(prompt="red circle", device="cpu", do_classifier_free_guidance=False)
    blue = pipe.encode_prompt(prompt="blue", device="cpu", do_classifier_free_guidance=False)
    assert kwargs["prompt_embeds"].shape[0] == 2
    torch.testing.assert_close(kwargs["prompt_embeds"][1], (0.75 * red[0] + 0.25 * blue[0])[0])
    torch.testing.assert_close(kwargs["pooled_prompt_embeds"][0], (0.75 * red[2] + 0.25 * blue[2])[0])
    assert "negative_prompt_embeds" not in kwargs  # no guidance, no negative side


def test_sdxl_grid_with_weights_negative_and_chaos(sdxl: DiffusersBackend) -> None:
    result = run_job(
        sdxl,
        "a fox",
        weighted_prompts=(WeightedPrompt("a fox", 2.0), WeightedPrompt("snow", -0.5)),
        negative_prompt="blur, snow",
        chaos=40,
        aspect_ratio=(16, 9),
        steps=None,
    )
    assert len(result.images) == 4
    assert result.images[0].size == (88, 48)
    assert result.steps == 2
    assert result.cfg == 1.5  # a Turbo model turns guidance on for `--no`
    assert "Turbo" in result.extra["notes"]


def test_sdxl_variation(sdxl: DiffusersBackend, tmp_path: Path) -> None:
    source = tmp_path / "cell.png"
    run_job(sdxl, steps=1, count=1).images[0].save(source)
    result = run_job(sdxl, mode=Mode.VARIATION, init_image=source, strength=0.35, steps=None, count=2)
    assert [image.size for image in result.images] == [(64, 64), (64, 64)]
    assert result.steps == 1


def test_sdxl_edits_through_its_own_inpainting_pipeline(sdxl: DiffusersBackend, tmp_path: Path) -> None:
    source = tmp_path / "cell.png"
    run_job(sdxl, steps=1, count=1).images[0].save(source)
    result = run_job(sdxl, "a fox", mode=Mode.EDIT, init_image=source, edit="pan right", steps=None, chaos=30)
    assert type(sdxl.model.inpaint).__name__ == "StableDiffusionXLInpaintPipeline"
    assert [image.size for image in result.images] == [(96, 64)] * 4
    assert result.extra["mode"] == "pan right"
    with Image.open(source) as opened:
        kept = opened.convert("RGB").crop((0, 0, 56, 64))  # left of the feather
    assert all(image.crop((0, 0, 56, 64)).tobytes() == kept.tobytes() for image in result.images)


def test_sdxl_paints_a_region_softly_step_by_step(sdxl: DiffusersBackend, tmp_path: Path) -> None:
    # SDXL's inpainting pipeline hands `SoftMask` its mask too (with added text embeds and time ids
    # beside it); four steps, so the mask changes between them.
    source = tmp_path / "cell.png"
    run_job(sdxl, steps=1, count=1).images[0].save(source)
    result = run_job(sdxl, "a fox", mode=Mode.EDIT, init_image=source, edit="region 5", steps=4, count=2)
    assert result.extra["mode"] == "vary region 5"
    assert result.steps == 4
    with Image.open(source) as opened:
        original = np.asarray(opened.convert("RGB"))
    cell = np.zeros(original.shape[:2], dtype=bool)
    cell[21:43, 21:43] = True  # the middle third of 64 px
    for image in result.images:
        pixels = np.asarray(image)
        assert np.array_equal(pixels[~cell], original[~cell])
        assert not np.array_equal(pixels[cell], original[cell])
