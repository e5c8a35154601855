"""`LocalQueue`'s scheduling: fairness, limits, positions and estimates, seen from outside."""

from __future__ import annotations

import asyncio
import threading

import pytest

from engine.errors import QueueFull
from engine.queue import JobQueue, JobStarted, LocalQueue
from engine.simulated import SimulatedBackend
from tests.engine.queue.conftest import (
    HANG_GUARD_S,
    QueueMaker,
    held_backend,
    prompts,
    request,
    results,
    started,
    wait_for,
)

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
    assert [queue.position(h.job_id) for h in a] == [0, 0, 1]  # a free GPU, but a is at the limit
    b = await queue.submit("b", request("b0"))
    await started(b)  # b is not held back by a's backlog
    assert [queue.position(h.job_id) for h in (*a, b)] == [0, 0, 1, 0]
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


# --- ids, positions and estimates ---------------------------------------------------------


async def overdue(queue: LocalQueue, job_id: str) -> None:
    """Wait until the running job `job_id` has run longer than the average job, by the queue's estimate."""
    async with asyncio.timeout(HANG_GUARD_S):
        # Polled: what is awaited is the clock passing the average, and no event marks that.
        while queue.estimate(job_id) != 0.0:  # noqa: ASYNC110
            await asyncio.sleep(0.001)


async def test_a_stored_job_id_can_be_resubmitted_but_not_twice_at_once(make_queue: QueueMaker) -> None:
    backend, gate = held_backend()
    queue = make_queue(backend)
    handle = await queue.submit("a", request("x"), job_id="stored-42")
    assert handle.job_id == "stored-42"
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
    (measured,) = await results(first)
    assert queue.estimate(first.job_id) is None  # no longer in the queue
    backend.gate = gate = threading.Event()
    handles = [await queue.submit(owner, request(owner)) for owner in "abcd"]
    await started(handles[0])
    assert [queue.position(h.job_id) for h in handles] == [0, 1, 2, 3]
    # Held at the gate, the running job outlasts the average job sooner or later; from then on
    # it counts as due now, so no estimate depends on the moment it is read.
    running = handles[0].job_id
    await overdue(queue, running)
    waiting = [queue.estimate(h.job_id) for h in handles[1:]]
    average = waiting[0]
    assert average is not None
    # The queue times a job from when it hands it over, so never shorter than the backend did.
    assert average >= measured.elapsed_s > 0
    assert waiting == pytest.approx([average, 2 * average, 3 * average])  # one job's worth per place
    gate.set()
    await results(*handles)


async def test_positions_put_running_jobs_first_then_waiting_ones_in_start_order(
    make_queue: QueueMaker,
) -> None:
    backend, gate = held_backend()
    queue = make_queue(backend)
    await queue.start()
    mine = [await queue.submit("me", request(f"m{i}")) for i in range(3)]
    yours = await queue.submit("you", request("y"))
    await started(mine[0])
    assert [queue.position(h.job_id) for h in (*mine, yours)] == [0, 2, 3, 1]  # the newcomer first
    assert queue.position("not-a-job") is None
    assert queue.estimate(yours.job_id) is None  # no job has finished, so nothing to go by
    gate.set()
    await results(*mine, yours)
    assert [queue.position(h.job_id) for h in (*mine, yours)] == [None] * 4
    assert prompts(backend) == ["m0", "y", "m1", "m2"]


def test_local_queue_is_a_job_queue() -> None:
    assert isinstance(LocalQueue([SimulatedBackend()]), JobQueue)
