"""FID/IS through torchmetrics with the shapes network; Inception is chosen when its weights are set."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest
from PIL import ImageFilter

from engine.evaluation import (
    INCEPTION_URL,
    NO_INCEPTION,
    MetricsError,
    draw_labels,
    fidelity,
    parse_prompt,
    pick_metrics,
    shapes_prompts,
)


def _dataset(prompts: list[str], seed: int) -> list:
    rng = random.Random(seed)
    pictures = []
    for prompt in prompts:
        labels = parse_prompt(prompt)
        assert labels is not None
        pictures.append(draw_labels(labels, rng))
    return pictures


def test_shapes_fid_is_small_between_two_draws_of_the_dataset_and_grows_with_damage() -> None:
    prompts = shapes_prompts(60, seed=1)
    real, again = _dataset(prompts, seed=1), _dataset(prompts, seed=2)
    same = fidelity(real, again)
    blurred = [
        fidelity(real, [image.filter(ImageFilter.GaussianBlur(radius)) for image in again]).fid
        for radius in (1, 2, 3)
    ]
    assert same.fid < blurred[0] < blurred[1] < blurred[2]
    grey = fidelity(real, [image.convert("L").convert("RGB") for image in again])
    assert grey.fid > 10 * same.fid
    assert fidelity(real, again) == same  # seeded: the same pictures give the same figures


def test_shapes_is_is_high_for_varied_shapes_and_low_for_one_repeated() -> None:
    prompts = shapes_prompts(72, seed=1)
    varied = _dataset(prompts, seed=1)
    repeated = [varied[0]] * len(varied)
    high = fidelity(varied, varied).inception_score
    low = fidelity(varied, repeated).inception_score
    assert high > 10  # 36 classes at most: kind × shape colour, all present here
    assert low < 1.5


def test_without_inception_weights_the_shapes_network_is_used_and_labelled() -> None:
    metrics = pick_metrics(None)
    assert (metrics.fid_label, metrics.is_label) == ("shapes-FID", "shapes-IS")
    assert "IMAGINE_INCEPTION_WEIGHTS" in NO_INCEPTION
    assert INCEPTION_URL in NO_INCEPTION
    assert "not comparable with Inception FID" in NO_INCEPTION


def test_a_missing_inception_file_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(MetricsError, match=r"which is not a file; download https://github\.com/toshas"):
        pick_metrics(tmp_path / "nope.pth")


@pytest.mark.skipif(
    importlib.util.find_spec("torch_fidelity") is not None, reason="torch-fidelity is installed"
)
def test_inception_weights_without_torch_fidelity_say_what_to_install(tmp_path: Path) -> None:
    weights = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"not really weights")
    with pytest.raises(MetricsError, match="pip install torch-fidelity"):
        pick_metrics(weights)
