"""The fair GPU queue, driven through a simulated backend (the fake sits at the backend boundary).

Jobs are held with the backend's `gate` and observed through queue events, so every ordering
asserted here is decided by the queue, not by timing.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

import engine.queue
from engine._queue_sched import FairScheduler, estimate_finish
from engine.backend import ProgressCallback
from engine.errors import GenerationError, JobCancelled, JobInterrupted, QueueClosed, QueueFull
from engine.queue import (
    EventStream,
    JobEvent,
    JobFailed,
    JobFinished,
    JobHandle,
    JobProgress,
    JobQueue,
    JobQueued,
    JobStarted,
    LocalQueue,
    QueueStats,
)
from engine.simulated import SimulatedBackend
from engine.types import GenerationRequest, GenerationResult, Progress

E = TypeVar("E", bound=JobEvent)

QueueMaker = Callable[..., LocalQueue]


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
    async with asyncio.timeout(5):
        async for event in stream:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the stream ended without a {kind.__name__}")


async def started(handle: JobHandle) -> None:
    await wait_for(handle.events(), JobStarted)


def prompts(backend: SimulatedBackend) -> list[str]:
    return [call.prompt for call in backend.calls]


async def results(*handles: JobHandle) -> list[GenerationResult]:
    async with asyncio.timeout(5):
        return [await handle.result() for handle in handles]


# --- fairness -----------------------------------------------------------------------------


async def test_owners_take_turns_whatever_order_they_submitted_in(make_queue: QueueMaker) -> None:
    backend = SimulatedBackend(seconds=0, steps=1)
    queue = make_queue(backend)
    handles = [await queue.submit(owner, request(f"{owner}{i}")) for owner in "abc" for i in range(3)]
    await queue.start()
    await results(*handles)
    assert prompts(backend) == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]


async def test_a_newcomer_goes_next_behind_another_owners_backlog(make_queue: QueueMaker) -> None:
    backend, gate = held_backend()
    queue = make_queue(backend, max_waiting_per_owner=20)
    await queue.start()
    backlog = [await queue.submit("heavy", request(f"heavy{i}")) for i in range(20)]
    await started(backlog[0])
    newcomer = await queue.submit("new", request("new"))
    assert queue.position(newcomer.job_id) == 1
    gate.set()
    await results(*backlog, newcomer)
    assert prompts(backend)[:3] == ["heavy0", "new", "heavy1"]


async def test_positions_predict_the_actual_start_order(make_queue: QueueMaker) -> None:
    backend, gate = held_backend()
    queue = make_queue(backend)
    await queue.start()
    owners = ["a", "a", "a", "b", "c", "c", "a", "b", "d", "c", "a", "d", "b"]
    handles = [await queue.submit(owner, request(f"{owner}{i}")) for i, owner in enumerate(owners)]
    await started(handles[0])
    waiting = handles[1:]
    positions = {h.job_id: queue.position(h.job_id) or 0 for h in waiting}
    assert sorted(positions.values()) == list(range(1, len(waiting) + 1))
    predicted = sorted(waiting, key=lambda h: positions[h.job_id])
    gate.set()
    await results(*handles)
    assert prompts(backend)[1:] == [h.request.prompt for h in predicted]
    assert prompts(backend)[1:6] == ["b3", "c4", "d8", "a1", "b7"]  # round-robin, newcomers first


async def test_an_owner_at_the_running_limit_is_skipped_until_one_ends(make_queue: QueueMaker) -> None:
    (b1, g1), (b2, g2), (b3, g3) = (held_backend(f"gpu{i}") for i in range(3))
    queue = make_queue(b1, b2, b3, max_running_per_owner=2)
    await queue.start()
    a = [await queue.submit("a", request(f"a{i}")) for i in range(3)]
    await started(a[1])
    assert queue.running == 2
    assert queue.position(a[2].job_id) == 1  # a free GPU, but a is at the limit
    b = await queue.submit("b", request("b0"))
    await started(b)  # b is not held back by a's backlog
    assert queue.position(a[2].job_id) == 1
    assert queue.running == 3
    a2_events = a[2].events()
    g1.set()  # a0 ends on gpu0, so a2 may start, on the one GPU now free
    assert (await wait_for(a2_events, JobStarted)).worker == "gpu0#0"
    for gate in (g2, g3):
        gate.set()
    await results(*a, b)


# --- limits -------------------------------------------------------------------------------


async def test_too_many_waiting_jobs_are_refused_for_that_owner_only(make_queue: QueueMaker) -> None:
    backend, gate = held_backend()
    queue = make_queue(backend, max_waiting_per_owner=2)
    await queue.start()
    running = await queue.submit("a", request("a0"))
    await started(running)
    waiting = [await queue.submit("a", request(f"a{i}")) for i in (1, 2)]
    with pytest.raises(QueueFull, match="2 jobs waiting") as refused:
        await queue.submit("a", request("a3"))
    assert refused.value.owner == "a"
    other = await queue.submit("b", request("b0"))
    assert await queue.cancel(waiting[0].job_id)
    again = await queue.submit("a", request("a4"))
    gate.set()
    await results(running, waiting[1], other, again)
    assert "a3" not in prompts(backend)


async def test_an_owner_can_have_limits_of_their_own(make_queue: QueueMaker) -> None:
    (b1, g1), (b2, g2), (b3, g3) = (held_backend(f"gpu{i}") for i in range(3))
    queue = make_queue(b1, b2, b3, max_running_per_owner=1, max_waiting_per_owner=1)
    await queue.start()
    vip = [await queue.submit("vip", request(f"v{i}"), max_running=2, max_waiting=3) for i in range(5)]
    assert [queue.position(h.job_id) for h in vip] == [0, 0, 1, 2, 3]  # a GPU is free, vip at 2
    with pytest.raises(QueueFull, match="3 jobs waiting"):
        await queue.submit("vip", request("v5"), max_waiting=3)
    a = [await queue.submit("a", request(f"a{i}")) for i in range(2)]
    # The default limits hold for a: a1 waits for a0, which started last, so v2 and v3 go first.
    assert [queue.position(h.job_id) for h in a] == [0, 3]
    with pytest.raises(QueueFull, match="1 jobs waiting"):
        await queue.submit("a", request("a2"))
    with pytest.raises(ValueError, match="max_running must be at least 1"):
        await queue.submit("b", request("b0"), max_running=0)
    for gate in (g1, g2, g3):
        gate.set()
    await results(*vip, *a)


async def test_a_job_that_starts_at_once_does_not_count_as_waiting(make_queue: QueueMaker) -> None:
    backend, gate = held_backend()
    queue = make_queue(backend, max_waiting_per_owner=0)
    await queue.start()
    first = await queue.submit("a", request("a0"))
    with pytest.raises(QueueFull):
        await queue.submit("a", request("a1"))
    gate.set()
    await results(first)


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
        async with asyncio.timeout(5):
            await running.result()
    terminal = await wait_for(running.events(), JobFailed)
    assert terminal.cancelled
    gate.set()
    await results(after)


class IgnoresCancel:
    """A backend that finishes its job whatever happens; the queue must still honour a cancel."""

    name = "stubborn"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def generate(
        self, request: GenerationRequest, *, on_progress: ProgressCallback, cancelled: threading.Event
    ) -> GenerationResult:
        self.entered.set()
        self.release.wait(5)
        return SimulatedBackend(seconds=0, steps=1).generate(
            request, on_progress=on_progress, cancelled=threading.Event()
        )

    def close(self) -> None:
        pass


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
        self.release.wait(5)
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
    assert backend.burst_done.wait(5)
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
    assert queue.waiting == 2
    assert backend.gate is not None
    backend.gate.set()
    assert backend.all_ran.wait(5)  # the loop is blocked here, so the worker fed itself
    await results(*handles)
    assert prompts(backend) == ["a", "b", "c"]


async def test_a_late_subscriber_gets_the_terminal_event(make_queue: QueueMaker) -> None:
    queue = make_queue(SimulatedBackend(seconds=0, steps=1))
    await queue.start()
    handle = await queue.submit("a", request("x"))
    await results(handle)
    assert handle.done()
    assert [type(event) async for event in handle.events()] == [JobFinished]
    assert queue.handle(handle.job_id) is None


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


# --- ids, positions and estimates ---------------------------------------------------------


async def test_a_stored_job_id_can_be_resubmitted_but_not_twice_at_once(make_queue: QueueMaker) -> None:
    backend, gate = held_backend()
    queue = make_queue(backend)
    handle = await queue.submit("a", request("x"), job_id="stored-42")
    assert handle.job_id == "stored-42"
    assert queue.handle("stored-42") is handle
    with pytest.raises(ValueError, match="already in the queue"):
        await queue.submit("a", request("x"), job_id="stored-42")
    assert queue.position("stored-42") == 1  # not started yet: the queue only waits
    await queue.start()
    gate.set()
    await results(handle)
    again = await queue.submit("a", request("x"), job_id="stored-42")
    await results(again)


async def test_estimates_follow_recent_durations_and_position(make_queue: QueueMaker) -> None:
    backend = SimulatedBackend(seconds=0.02, steps=2)
    queue = make_queue(backend)
    await queue.start()
    first = await queue.submit("a", request("first"))
    assert queue.estimate(first.job_id) is None  # nothing measured yet
    await results(first)
    assert queue.estimate(first.job_id) is None  # no longer in the queue
    backend.gate = gate = threading.Event()
    handles = [await queue.submit(owner, request(owner)) for owner in "abcd"]
    await started(handles[0])
    estimates = [queue.estimate(h.job_id) for h in handles]
    assert all(e is not None for e in estimates)
    running, *waiting = [e or 0.0 for e in estimates]
    assert running <= 0.05  # at most one average job duration
    assert waiting == sorted(waiting)
    assert waiting[2] - waiting[1] == pytest.approx(waiting[1] - waiting[0], abs=0.005)
    assert 0.01 < waiting[1] - waiting[0] < 0.05  # one job's worth (about 20 ms) per place
    gate.set()
    await results(*handles)


async def test_jobs_of_lists_running_then_waiting(make_queue: QueueMaker) -> None:
    backend, gate = held_backend()
    queue = make_queue(backend)
    await queue.start()
    mine = [await queue.submit("me", request(f"m{i}")) for i in range(3)]
    await queue.submit("you", request("y"))
    await started(mine[0])
    assert queue.jobs_of("me") == tuple(h.job_id for h in mine)
    assert queue.jobs_of("nobody") == ()
    assert (queue.running, queue.waiting) == (1, 3)
    assert queue.stats() == QueueStats(workers=1, running=1, waiting=3, owners=2, average_job_s=None)
    gate.set()


def test_local_queue_is_a_job_queue() -> None:
    assert isinstance(LocalQueue([SimulatedBackend()]), JobQueue)


# --- close ------------------------------------------------------------------------------


async def test_close_drops_waiting_jobs_and_lets_running_ones_finish() -> None:
    backend, gate = held_backend()
    queue = LocalQueue([backend])
    await queue.start()
    running = await queue.submit("a", request("running"))
    waiting = await queue.submit("b", request("waiting"))
    await started(running)
    closing = asyncio.create_task(queue.close(grace_s=5))
    with pytest.raises(JobInterrupted, match="did not start"):
        await results(waiting)
    with pytest.raises(QueueClosed):
        await queue.submit("c", request("late"))
    assert not closing.done()  # still waiting for the running job
    gate.set()
    await results(running)
    async with asyncio.timeout(5):
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
    monkeypatch.setattr(engine.queue, "_ABANDON_AFTER_S", 0.05)
    backend = IgnoresCancel()
    queue = LocalQueue([backend])
    await queue.start()
    handle = await queue.submit("a", request("x"))
    await started(handle)
    async with asyncio.timeout(2):
        await queue.close(grace_s=0)
    with pytest.raises(JobInterrupted):
        await results(handle)
    backend.release.set()


async def test_close_before_start_fails_every_job_and_does_not_hang() -> None:
    queue = LocalQueue([SimulatedBackend()])
    handle = await queue.submit("a", request("x"))
    await queue.close()
    with pytest.raises(JobInterrupted):
        await results(handle)
    with pytest.raises(QueueClosed):
        await queue.start()


# --- the scheduling policy on its own -----------------------------------------------------

Op = tuple[str, str]  # ("push", owner) or ("step", "")


@given(
    ops=st.lists(
        st.one_of(st.tuples(st.just("push"), st.sampled_from("abcd")), st.just(("step", ""))), max_size=40
    ),
    workers=st.integers(1, 4),
    limit=st.integers(1, 3),
    own_limit=st.integers(1, 3),
)
def test_start_order_predicts_what_the_scheduler_does(
    ops: list[Op], workers: int, limit: int, own_limit: int
) -> None:
    """Owner d has a running limit of its own; the others have the scheduler's."""
    sched: FairScheduler[int] = FairScheduler(max_running_per_owner=limit)
    running: deque[str] = deque()  # owners of running jobs, oldest first
    started: list[int] = []

    def step() -> None:
        """An idle worker takes the next job if one may start, else the oldest running job ends."""
        if len(running) < workers and (picked := sched.pop_next()) is not None:
            running.append(picked[0])
            started.append(picked[1])
        elif running:
            sched.finished(running.popleft())

    for number, (op, owner) in enumerate(ops):
        if op == "push":
            sched.push(owner, number, max_running=own_limit if owner == "d" else None)
            if workers <= min(limit, own_limit):  # where the cheap formula is exact
                order = sched.start_order(list(running), workers)
                assert sched.place_of_newest(owner) == order.index(number) + 1
        else:
            step()
    predicted = sched.start_order(list(running), workers)
    already = len(started)
    while len(sched):
        step()
    assert started[already:] == predicted


def test_estimate_finish_assigns_jobs_to_the_worker_free_first() -> None:
    workers = [(10.0, 3.0), (10.0, 0.0)]  # (average, seconds until free)
    assert estimate_finish(0, workers) == 10.0  # the idle worker takes it now
    assert estimate_finish(1, workers) == 13.0  # one job ahead takes the idle worker
    assert estimate_finish(2, workers) == 20.0
    assert estimate_finish(0, [(None, 0.0)]) is None


async def test_a_second_close_waits_for_the_first() -> None:
    backend, gate = held_backend()
    queue = LocalQueue([backend])
    await queue.start()
    running = await queue.submit("a", request("running"))
    await started(running)
    first = asyncio.create_task(queue.close(grace_s=5))
    second = asyncio.create_task(queue.close())
    await asyncio.sleep(0.01)
    assert not first.done()
    assert not second.done()
    gate.set()
    async with asyncio.timeout(5):
        await asyncio.gather(first, second)
    assert (await results(running))[0].seeds == running.request.seeds
