"""Fixtures for the evaluation tests: one torch thread, and one measured run shared by the whole package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from engine.evaluation import DATA, Row, evaluate, load_model_backend, shapes_prompts
from engine.tiny import build_random_pipeline

N = 48
"""Images per model in the shared run: twelve grids. FID over 128 features is biased upwards at small n:
at 16 images the trained tiny (v1) and random weights came out alike (65 and 62), at 48 far apart (25, 74)."""


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # On the shared 2-core machine, OpenMP threads spinning on each other make the tiny UNet far slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A diffusers folder of the tiny architecture with random weights: what an untrained model draws."""
    folder = tmp_path_factory.mktemp("random-model")
    build_random_pipeline(seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def measured(random_model: Path) -> dict[str, Row]:
    """One small run at 1:1 of the dataset itself, the trained tiny model and the random-weights one."""
    prompts = shapes_prompts(N // 4, seed=0)
    rows = {}
    for name, model in ((DATA, DATA), ("tiny", "tiny"), ("random", str(random_model))):
        backend = load_model_backend(model, device="cpu")
        try:
            rows[name] = evaluate(backend, model, prompts, n=N, aspect=(1, 1), seed=0)
        finally:
            backend.close()
    return rows
