"""Driving the queue through a simulated backend (the fake sits at the backend boundary).

Jobs are held with the backend's `gate` and observed through queue events, so every ordering
asserted in these tests is decided by the queue, not by timing. The timeouts here only keep a
broken queue from hanging the run; how long anything takes is left to `bench/`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest

from engine.backend import ProgressCallback
from engine.queue import EventStream, JobEvent, JobHandle, JobStarted, LocalQueue
from engine.simulated import SimulatedBackend
from engine.types import GenerationRequest, GenerationResult

E = TypeVar("E", bound=JobEvent)

QueueMaker = Callable[..., LocalQueue]

HANG_GUARD_S = 5.0
"""Longer than any step here takes on a loaded machine; reaching it means the queue is stuck."""


def request(prompt: str, seed: int = 0) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, seed=seed)


def held_backend(name: str = "sim") -> tuple[SimulatedBackend, threading.Event]:
    """A backend whose jobs do not move until its gate is set."""
    gate = threading.Event()
    return SimulatedBackend(seconds=0, steps=3, name=name, gate=gate), gate


@pytest.fixture
async def make_queue() -> AsyncIterator[QueueMaker]:
    made: list[LocalQueue] = []

    def make(*backends: SimulatedBackend, **kwargs: Any) -> LocalQueue:
        queue = LocalQueue(backends, **kwargs)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await queue.close(grace_s=0)


async def wait_for(stream: EventStream, kind: type[E]) -> E:
    """Read `stream` up to the first event of `kind`."""
    async with asyncio.timeout(HANG_GUARD_S):
        async for event in stream:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the stream ended without a {kind.__name__}")


async def started(handle: JobHandle) -> None:
    await wait_for(handle.events(), JobStarted)


def prompts(backend: SimulatedBackend) -> list[str]:
    return [call.prompt for call in backend.calls]


async def results(*handles: JobHandle) -> list[GenerationResult]:
    async with asyncio.timeout(HANG_GUARD_S):
        return [await handle.result() for handle in handles]


class IgnoresCancel:
    """A backend that finishes its job only when released, whatever happens; the queue must still
    honour a cancel, and must not wait for it on close."""

    name = "stubborn"
    edits = True

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()

    def generate(
        self, request: GenerationRequest, *, on_progress: ProgressCallback, cancelled: threading.Event
    ) -> GenerationResult:
        self.entered.set()
        self.release.wait(10 * HANG_GUARD_S)  # a safety net; every test releases it itself
        result = SimulatedBackend(seconds=0, steps=1).generate(
            request, on_progress=on_progress, cancelled=threading.Event()
        )
        self.returned.set()
        return result

    def close(self) -> None:
        pass
