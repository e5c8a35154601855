"""One small run through the engine's public path: the figures move the right way between the dataset
itself, the trained tiny model and the same architecture with random weights."""

from __future__ import annotations

import pytest

from engine.evaluation import DATA, DataBackend, Row, evaluate, shapes_prompts
from tests.engine.evaluation.conftest import N


@pytest.mark.slow  # the shared run: a minute on a busy 2-core CPU
def test_shapes_fid_orders_data_below_tiny_below_random(measured: dict[str, Row]) -> None:
    data, tiny, random = measured[DATA], measured["tiny"], measured["random"]
    assert data.fid < tiny.fid < random.fid, (data.fid, tiny.fid, random.fid)


@pytest.mark.slow  # the shared run: a minute on a busy 2-core CPU
def test_adherence_is_near_perfect_on_the_data_and_near_chance_with_random_weights(
    measured: dict[str, Row],
) -> None:
    data, random = measured[DATA], measured["random"]
    for row in measured.values():
        assert (row.images, row.adherence.scored, row.width, row.height) == (N, N, 64, 64)
    assert data.adherence.background == 1.0
    assert data.adherence.all_three is not None
    assert data.adherence.all_three >= 0.95
    # Random weights draw noise: now and then its grey reads as a named grey background, by chance.
    assert random.adherence.background is not None
    assert random.adherence.background <= 0.5
    assert random.adherence.all_three is not None
    assert random.adherence.all_three <= 0.1


@pytest.mark.slow  # the shared run: a minute on a busy 2-core CPU
def test_shapes_is_is_highest_for_the_data(measured: dict[str, Row]) -> None:
    assert measured[DATA].inception_score > measured["random"].inception_score


@pytest.mark.slow  # the shared run: a minute on a busy 2-core CPU
def test_rows_keep_timing_and_sample_grids(measured: dict[str, Row]) -> None:
    tiny = measured["tiny"]
    assert tiny.seconds_per_grid > 0
    assert tiny.seconds_per_image == tiny.seconds_per_grid / 4
    assert tiny.seconds >= tiny.seconds_per_grid
    assert len(tiny.samples) == 2
    assert all(len(sample.images) == 4 for sample in tiny.samples)


def test_the_data_model_at_3_2_draws_wide_pictures_and_skips_prompts_it_cannot_draw() -> None:
    prompts = ["a lighthouse at dusk", *shapes_prompts(2, seed=0)]
    row = evaluate(DataBackend(), DATA, prompts, n=10, aspect=(3, 2))
    assert (row.width, row.height, row.images) == (96, 64, 10)
    assert row.adherence.skipped == 0  # the lighthouse was never drawn
    assert row.adherence.background == 1.0
