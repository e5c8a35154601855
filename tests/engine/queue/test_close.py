"""Closing `LocalQueue`: waiting jobs are dropped, running ones get a grace period, then are stopped."""

from __future__ import annotations

import asyncio

import pytest

from engine.errors import JobInterrupted, QueueClosed
from engine.queue import LocalQueue
from engine.simulated import SimulatedBackend
from tests.engine.queue.conftest import (
    HANG_GUARD_S,
    IgnoresCancel,
    held_backend,
    request,
    results,
    started,
)

LONG_GRACE_S = 3600.0
"""A grace period no test outlasts: the running job ends when its gate opens, not when this runs out."""


async def test_close_drops_waiting_jobs_and_lets_running_ones_finish() -> None:
    backend, gate = held_backend()
    queue = LocalQueue([backend])
    await queue.start()
    running = await queue.submit("a", request("running"))
    waiting = await queue.submit("b", request("waiting"))
    await started(running)
    closing = asyncio.create_task(queue.close(grace_s=LONG_GRACE_S))
    with pytest.raises(JobInterrupted, match="did not start"):
        await results(waiting)
    with pytest.raises(QueueClosed):
        await queue.submit("c", request("late"))
    assert not closing.done()  # still waiting for the running job
    gate.set()
    await results(running)
    async with asyncio.timeout(HANG_GUARD_S):
        await closing


async def test_close_interrupts_running_jobs_after_the_grace_period() -> None:
    backend, _ = held_backend()
    queue = LocalQueue([backend])
    await queue.start()
    running = await queue.submit("a", request("running"))
    await started(running)
    await queue.close(grace_s=0)
    with pytest.raises(JobInterrupted, match="shut down"):
        await results(running)


async def test_close_abandons_a_backend_that_ignores_cancel(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only to keep the test short; how long close waits for a backend is not asserted.
    monkeypatch.setattr("engine.queue._local._ABANDON_AFTER_S", 0.05)
    backend = IgnoresCancel()
    queue = LocalQueue([backend])
    await queue.start()
    handle = await queue.submit("a", request("x"))
    await started(handle)
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await queue.close(grace_s=0)
        assert not backend.returned.is_set()  # close gave up on the backend instead of waiting
        with pytest.raises(JobInterrupted):
            await results(handle)
    finally:
        backend.release.set()


async def test_close_before_start_fails_every_job_and_does_not_hang() -> None:
    queue = LocalQueue([SimulatedBackend()])
    handle = await queue.submit("a", request("x"))
    await queue.close()
    with pytest.raises(JobInterrupted):
        await results(handle)
    with pytest.raises(QueueClosed):
        await queue.start()


async def test_a_second_close_waits_for_the_first() -> None:
    backend, gate = held_backend()
    queue = LocalQueue([backend])
    await queue.start()
    running = await queue.submit("a", request("running"))
    waiting = await queue.submit("b", request("waiting"))
    await started(running)
    first = asyncio.create_task(queue.close(grace_s=LONG_GRACE_S))
    second = asyncio.create_task(queue.close())
    with pytest.raises(JobInterrupted, match="did not start"):
        await results(waiting)  # both closes have begun, and the first has dropped the waiting job
    assert not first.done()
    assert not second.done()
    gate.set()
    async with asyncio.timeout(HANG_GUARD_S):
        await asyncio.gather(first, second)
    assert (await results(running))[0].seeds == running.request.seeds
