"""A job's life in `LocalQueue`: cancel, failures, results and the events that report them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from engine.backend import ProgressCallback
from engine.errors import GenerationError, JobCancelled
from engine.queue import JobEvent, JobFailed, JobFinished, JobProgress, JobQueued, JobStarted, LocalQueue
from engine.simulated import SimulatedBackend
from engine.types import GenerationRequest, GenerationResult, Progress
from tests.engine.queue.conftest import (
    HANG_GUARD_S,
    IgnoresCancel,
    QueueMaker,
    held_backend,
    prompts,
    request,
    results,
    started,
    wait_for,
)

# --- cancel -------------------------------------------------------------------------------


async def test_cancel_a_waiting_job_never_runs_it(make_queue: QueueMaker) -> None:
    backend, gate = held_backend()
    queue = make_queue(backend, position_interval_s=0)
    await queue.start()
    first = await queue.submit("a", request("first"))
    doomed = await queue.submit("b", request("doomed"))
    last = await queue.submit("c", request("last"))
    events = last.events()
    assert queue.position(last.job_id) == 2
    assert await queue.cancel(doomed.job_id)
    assert await wait_for(events, JobQueued) == JobQueued(last.job_id, 2)  # the state when subscribed
    assert await wait_for(events, JobQueued) == JobQueued(last.job_id, 1)  # moved up
    with pytest.raises(JobCancelled):
        await doomed.result()
    assert queue.position(doomed.job_id) is None
    assert not await queue.cancel(doomed.job_id)  # once only
    gate.set()
    await results(first, last)
    assert prompts(backend) == ["first", "last"]


async def test_cancel_a_running_job_stops_it_and_the_worker_goes_on(make_queue: QueueMaker) -> None:
    backend, gate = held_backend()
    queue = make_queue(backend)
    await queue.start()
    running = await queue.submit("a", request("running"))
    after = await queue.submit("a", request("after"))
    await started(running)
    assert await running.cancel()
    with pytest.raises(JobCancelled):
        await results(running)
    terminal = await wait_for(running.events(), JobFailed)
    assert terminal.cancelled
    gate.set()
    await results(after)


async def test_a_cancelled_job_ends_cancelled_even_if_the_backend_finishes_it() -> None:
    backend = IgnoresCancel()
    async with LocalQueue([backend]) as queue:
        handle = await queue.submit("a", request("x"))
        await started(handle)
        assert await queue.cancel(handle.job_id)
        backend.release.set()
        with pytest.raises(JobCancelled):
            await results(handle)


# --- results, failures and events ------------------------------------------------------------


async def test_a_failure_fails_that_job_once_and_the_worker_goes_on(make_queue: QueueMaker) -> None:
    def fail(req: GenerationRequest) -> BaseException | None:
        return {"bad": GenerationError("The model broke."), "bug": KeyError("oops")}.get(req.prompt)

    backend = SimulatedBackend(seconds=0, steps=2, fail=fail)
    queue = make_queue(backend)
    await queue.start()
    bad = await queue.submit("a", request("bad"))
    bug = await queue.submit("b", request("bug"))
    good = await queue.submit("c", request("good"))
    events = bad.events()
    with pytest.raises(GenerationError, match="The model broke"):
        await results(bad)
    with pytest.raises(GenerationError, match="failed unexpectedly") as caught:
        await results(bug)
    assert isinstance(caught.value.__cause__, KeyError)
    (result,) = await results(good)
    assert result.seeds == good.request.seeds
    terminal = [event async for event in events if isinstance(event, JobFinished | JobFailed)]
    assert len(terminal) == 1
    assert isinstance(terminal[0], JobFailed)
    assert not terminal[0].cancelled


class ReturnsNothing(SimulatedBackend):
    def generate(  # type: ignore[override]
        self, request: GenerationRequest, *, on_progress: ProgressCallback, cancelled: threading.Event
    ) -> None:
        return None


async def test_a_backend_that_returns_no_result_fails_the_job(make_queue: QueueMaker) -> None:
    queue = make_queue(ReturnsNothing())
    await queue.start()
    with pytest.raises(GenerationError, match="no images but NoneType"):
        await results(await queue.submit("a", request("x")))


async def test_a_slow_subscriber_loses_progress_but_never_the_final_event(make_queue: QueueMaker) -> None:
    backend = SimulatedBackend(seconds=0, steps=200, previews=True)
    queue = make_queue(backend)
    handle = await queue.submit("a", request("x", seed=5))
    slow = handle.events()
    fast = handle.events()
    seen_fast: list[JobEvent] = []

    async def read_fast() -> None:
        seen_fast.extend([event async for event in fast])

    reader = asyncio.create_task(read_fast())
    await queue.start()
    result = (await results(handle))[0]
    await reader
    seen_slow = [event async for event in slow]  # read only after the job ended
    assert isinstance(seen_slow[0], JobQueued)
    assert isinstance(seen_slow[-1], JobFinished)
    assert seen_slow[-1].result is result
    assert sum(isinstance(event, JobProgress) for event in seen_slow) <= 1
    assert [type(event) for event in seen_fast][:2] == [JobQueued, JobStarted]
    assert isinstance(seen_fast[-1], JobFinished)
    steps = [event.progress.step for event in seen_fast if isinstance(event, JobProgress)]
    assert steps == sorted(steps)
    assert steps[-1] == 200  # the latest progress is flushed before the result
    last = next(event for event in reversed(seen_fast) if isinstance(event, JobProgress))
    assert last.progress.preview is not None


class Burst(SimulatedBackend):
    """Reports 1000 steps at once, then waits to be released."""

    def __init__(self) -> None:
        super().__init__(seconds=0, steps=1)
        self.burst_done = threading.Event()
        self.release = threading.Event()

    def generate(
        self, request: GenerationRequest, *, on_progress: ProgressCallback, cancelled: threading.Event
    ) -> GenerationResult:
        for step in range(1, 1001):
            on_progress(Progress(step=step, total=1000))
        self.burst_done.set()
        self.release.wait(HANG_GUARD_S)
        return super().generate(request, on_progress=lambda _: None, cancelled=cancelled)


async def test_a_burst_of_progress_costs_the_loop_one_wakeup(
    make_queue: QueueMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    handoffs: list[object] = []
    call_soon_threadsafe = loop.call_soon_threadsafe

    def counted(callback: Callable[..., object], *args: object) -> asyncio.Handle:
        handoffs.append(callback)
        return call_soon_threadsafe(callback, *args)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counted)
    backend = Burst()
    queue = make_queue(backend)
    await queue.start()
    handle = await queue.submit("a", request("x"))
    events = handle.events()
    # Block the loop on purpose until the device has reported every step: nothing is handed
    # over meanwhile, so the burst must have cost one wakeup (besides the job's start).
    assert backend.burst_done.wait(HANG_GUARD_S)
    assert len(handoffs) == 2
    backend.release.set()
    seen = [event async for event in events]
    assert [type(event) for event in seen] == [JobStarted, JobProgress, JobFinished]
    assert isinstance(seen[1], JobProgress)
    assert seen[1].progress.step == 1000


class Counting(SimulatedBackend):
    def __init__(self, expected: int) -> None:
        super().__init__(seconds=0, steps=1, gate=threading.Event())
        self.expected = expected
        self.all_ran = threading.Event()

    def generate(
        self, request: GenerationRequest, *, on_progress: ProgressCallback, cancelled: threading.Event
    ) -> GenerationResult:
        result = super().generate(request, on_progress=on_progress, cancelled=cancelled)
        if len(self.calls) >= self.expected:
            self.all_ran.set()
        return result


async def test_the_device_goes_on_to_the_next_job_without_the_event_loop(make_queue: QueueMaker) -> None:
    backend = Counting(expected=3)
    queue = make_queue(backend)
    await queue.start()
    handles = [await queue.submit(owner, request(owner)) for owner in "abc"]
    assert [queue.position(h.job_id) for h in handles] == [0, 1, 2]
    assert backend.gate is not None
    backend.gate.set()
    assert backend.all_ran.wait(HANG_GUARD_S)  # the loop is blocked here, so the worker fed itself
    await results(*handles)
    assert prompts(backend) == ["a", "b", "c"]


async def test_a_late_subscriber_gets_the_terminal_event(make_queue: QueueMaker) -> None:
    queue = make_queue(SimulatedBackend(seconds=0, steps=1))
    await queue.start()
    handle = await queue.submit("a", request("x"))
    await results(handle)
    assert handle.done()
    assert [type(event) async for event in handle.events()] == [JobFinished]
    assert queue.position(handle.job_id) is None  # the queue forgot it


async def test_a_subscriber_can_stop_listening_early(make_queue: QueueMaker) -> None:
    backend, gate = held_backend()
    queue = make_queue(backend)
    await queue.start()
    handle = await queue.submit("a", request("x"))
    async with handle.events() as events:
        assert isinstance(await anext(events), JobStarted)
    assert [event async for event in events] == []
    gate.set()
    await results(handle)
