"""The tiny model's training script runs end to end (a few steps) and writes a loadable pipeline."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from engine.tiny.data import COLOURS, caption, draw, random_scene, sample_batch
from engine.tiny.train import main, parse_sizes

SHAPE_WORDS = ("circle", "circles", "square", "squares")


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


def test_kind_and_colour_swaps_change_one_attribute() -> None:
    from engine.tiny.train import swap_colour, swap_kind

    assert swap_kind("two red circles and a blue square on a black background") == (
        "two red squares and a blue triangle on a black background"
    )
    assert swap_kind("a big triangle in the top left") == "a big circle in the top left"
    assert swap_kind("a pink background") == "a pink background"
    rng = random.Random(0)
    for _ in range(20):
        swapped = swap_colour("a red square on a red background", rng)
        words = swapped.split()
        assert words[1] == words[5] != "red"  # every occurrence of the one colour, to a colour not named
        assert words[2] == "square"
    assert swap_colour("a big circle", rng) == "a big circle"


def _apart(tokenizer: Any, text_encoder: Any, first: str, second: str) -> float:
    from engine.tiny.train import encode_text

    with torch.no_grad():
        hidden = encode_text(tokenizer, text_encoder, [first, second])
    return float((hidden[0] - hidden[1]).pow(2).mean().sqrt())


def test_the_kind_contrast_pushes_kinds_encoded_alike_apart() -> None:
    """A text encoder that barely tells "circle" from "square" (their embeddings almost equal, as joint
    training drifts to: docs/tiny-model.md) pays the kind contrast, and its gradient moves them apart."""
    from engine.tiny import build_random_pipeline
    from engine.tiny.train import encode_text, kind_contrast_loss

    pipe = build_random_pipeline(seed=0)
    tokenizer, encoder = pipe.tokenizer, pipe.text_encoder
    table = encoder.get_input_embeddings().weight
    ids = {word: tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word))[0] for word in SHAPE_WORDS}
    with torch.no_grad():
        table[ids["square"]] = table[ids["circle"]] + 1e-3 * torch.randn(table.shape[1])
        table[ids["squares"]] = table[ids["circles"]] + 1e-3 * torch.randn(table.shape[1])
    captions = ["a red circle on a blue background", "two green circles on black", "a pink background"]
    circle, square = captions[0], captions[0].replace("circle", "square")
    before = _apart(tokenizer, encoder, circle, square)
    optimiser = torch.optim.SGD(encoder.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        loss = kind_contrast_loss(
            tokenizer, encoder, captions, encode_text(tokenizer, encoder, captions), random.Random(0)
        )
        losses.append(loss.detach().item())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert losses[0] > 0.9  # a kind swap moves the encoding almost nowhere, a colour swap a lot
    assert losses[-1] < losses[0]
    assert _apart(tokenizer, encoder, circle, square) > 5 * before
    no_shape = kind_contrast_loss(
        tokenizer, encoder, ["a pink background"], torch.zeros(1, 77, 8), random.Random(0)
    )
    assert no_shape.item() == 0


def test_training_further_from_a_saved_pipeline(tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    from engine.tiny import build_random_pipeline

    start = tmp_path / "start"
    build_random_pipeline(seed=0).save_pretrained(start)
    out = tmp_path / "further"
    steps = ["--unet-steps", "3", "--batch-size", "2", "--sizes", "64x64:1,72x56:1", "--min-snr-gamma", "0"]
    weights = ["--edge-weight", "12", "--low-noise-share", "0.5", "--kind-contrast", "0.2"]
    assert main(["--from", str(start), "--out", str(out), *steps, *weights]) == 0
    summary = json.loads((out / "training.json").read_text())
    assert summary["started_from"] == str(start)
    assert summary["config"]["kind_contrast"] == 0.2
    assert summary["config"]["sizes"] == [[64, 64, 1.0], [72, 56, 1.0]]
    assert len(summary["unet_eps_mse"]) == 3
    assert "vae_mse" not in summary  # step 3 only: the VAE is the start's
    pipe = StableDiffusionPipeline.from_pretrained(out, local_files_only=True)
    first = StableDiffusionPipeline.from_pretrained(start, local_files_only=True)
    assert torch.equal(pipe.vae.decoder.conv_out.weight, first.vae.decoder.conv_out.weight.half().float())
    assert not torch.equal(pipe.unet.conv_out.weight, first.unet.conv_out.weight.half().float())


@pytest.mark.parametrize("sizes", ["64x64", "64x60:1", "64x64:0", "64*64:1", "64x64:1,"])
def test_training_sizes_are_checked_before_anything_runs(
    sizes: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--sizes", sizes])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "argument --sizes" in error
    assert "WxH:share" in error or "multiples of 8" in error


def test_training_sizes_read_as_width_height_and_share() -> None:
    assert parse_sizes("64x64:0.5, 80X56:0.3") == ((64, 64, 0.5), (80, 56, 0.3))
