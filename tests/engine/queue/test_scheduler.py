"""The scheduling policy on its own: `FairScheduler` and `estimate_finish`, no queue, no threads."""

from __future__ import annotations

from collections import deque

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.queue._scheduler import FairScheduler, estimate_finish

Op = tuple[str, str]  # ("push", owner) or ("step", "")


# Hypothesis's per-example deadline and its too-slow check measure wall-clock time, which a busy
# machine stretches; the property is about order, so neither is wanted here.
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
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
