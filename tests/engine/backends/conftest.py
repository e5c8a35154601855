"""Backends over the tiny architecture: random weights for shape tests, trained ones for picture tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from engine.backends import load_backend
from engine.backends.diffusion import DiffusersBackend
from engine.tiny import build_random_pipeline
from engine.types import GenerationRequest, GenerationResult, Progress

Run = Callable[..., GenerationResult]


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core machine, OpenMP threads spin-waiting on each other made
    the tiny UNet 10x slower (0.8 s → 9 s for four calls); one thread is as fast when the machine is idle."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny() -> DiffusersBackend:
    """The trained tiny model (`IMAGINE_MODEL=tiny`): for what pictures look like."""
    backend = load_backend("tiny", device="cpu")
    assert isinstance(backend, DiffusersBackend)
    return backend


@pytest.fixture(scope="session")
def random_backend() -> DiffusersBackend:
    """The tiny architecture with random weights: fast, right shapes, pictures meaningless."""
    return DiffusersBackend.from_pipeline(build_random_pipeline(seed=0), "tiny-random", tiny=True)


def run_job(
    backend: Any, prompt: str = "a red circle", *, events: list[Progress] | None = None, **fields: Any
) -> GenerationResult:
    """One job, synchronously, collecting progress events into `events`."""
    fields.setdefault("steps", 4)
    sink = events if events is not None else []
    return backend.generate(
        GenerationRequest(prompt, **fields), on_progress=sink.append, cancelled=threading.Event()
    )
