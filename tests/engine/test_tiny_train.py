"""The tiny model's training script runs end to end (a few steps) and writes a loadable pipeline."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.tiny.data import COLOURS, caption, draw, random_scene, sample_batch
from engine.tiny.train import main


def test_training_script_writes_a_loadable_pipeline(tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    out = tmp_path / "model"
    assert (
        main(
            [
                "--out",
                str(out),
                "--vae-steps",
                "2",
                "--unet-steps",
                "2",
                "--batch-size",
                "2",
                "--vae-batch-size",
                "2",
                "--decoder-steps",
                "2",
            ]
        )
        == 0
    )

    summary = json.loads((out / "training.json").read_text())
    assert summary["config"]["vae_steps"] == 2
    assert summary["scaling_factor"] > 0
    assert len(summary["unet_eps_mse"]) == 2
    pipe = StableDiffusionPipeline.from_pretrained(out, local_files_only=True)
    assert pipe.unet.dtype == torch.float32  # fp16 on disk, fp32 when loaded on the CPU
    assert pipe.text_encoder.dtype == torch.float32
    assert pipe.vae.config.scaling_factor == pytest.approx(summary["scaling_factor"], rel=1e-3)
    image = pipe("a red circle", num_inference_steps=2, output_type="pil", height=64, width=64).images[0]
    assert image.size == (64, 64)


def test_training_is_seeded(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        main(
            [
                "--out",
                str(tmp_path / name),
                "--vae-steps",
                "1",
                "--unet-steps",
                "1",
                "--batch-size",
                "2",
                "--vae-batch-size",
                "2",
                "--decoder-steps",
                "1",
            ]
        )
        runs.append(json.loads((tmp_path / name / "training.json").read_text()))
    assert runs[0]["vae_mse"] == runs[1]["vae_mse"]
    assert runs[0]["unet_eps_mse"] == runs[1]["unet_eps_mse"]
    assert runs[0]["decoder_mse"] == runs[1]["decoder_mse"]


def test_dataset_captions_name_what_is_drawn() -> None:
    rng = random.Random(3)
    for _ in range(50):
        scene = random_scene(rng)
        text = caption(scene, rng)
        image = draw(scene)
        # The corner pixel is background: its colour is the one the scene names.
        assert image.getpixel((0, 0)) == COLOURS[scene.background]
        assert scene.groups[0].kind in text or scene.background in text
    pixels, captions = sample_batch(random.Random(0), 8, caption_dropout=1.0)
    assert pixels.shape == (8, 3, 64, 64)
    assert pixels.min() >= -1
    assert pixels.max() <= 1
    assert captions == [""] * 8


def test_wide_canvases_keep_shape_sizes_and_backgrounds() -> None:
    from engine.tiny.data import Scene, Shape

    scene = Scene("blue", (Shape("square", "red", 1, "big"),), ((0.5, 0.5),))
    square, wide = draw(scene), draw(scene, width=80, height=56)
    assert wide.size == (80, 56)
    assert wide.getpixel((0, 0)) == COLOURS["blue"]

    def red_rows(image: Image.Image) -> int:
        pixels = np.asarray(image, dtype=np.int32)
        red = (np.abs(pixels - np.array(COLOURS["red"])).sum(-1) < 30).any(axis=1)
        return int(red.sum())

    # The shape's size follows the short side: 56/64 of the square canvas's, give or take an edge pixel.
    assert abs(red_rows(wide) - red_rows(square) * 56 / 64) <= 1.5
    pixels, _ = sample_batch(random.Random(1), 3, width=80, height=56)
    assert pixels.shape == (3, 3, 56, 80)


def test_shape_mask_marks_the_shape_not_the_background() -> None:
    from engine.tiny.data import Scene, Shape
    from engine.tiny.train import shape_mask

    scene = Scene("green", (Shape("circle", "yellow", 1, None),), ((0.5, 0.5),))
    pixels = torch.from_numpy(
        (np.asarray(draw(scene), dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0)[None]
    )
    mask = shape_mask(pixels)
    assert mask.shape == (1, 1, 64, 64)
    assert mask[0, 0, 32, 32] == 1
    assert mask[0, 0, 2, 2] == 0
    # A medium circle: diameter 0.28 of the side, so about 6% of the picture.
    assert 0.04 < float(mask.mean()) < 0.09
