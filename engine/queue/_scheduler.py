"""The fair scheduling policy of the local queue: pure bookkeeping, no asyncio, no threads.

Owners are served least-recently-served first, which is round-robin for owners with a steady
backlog and puts a newcomer (or an owner coming back after going idle) at the head of the line,
so one person's backlog delays someone else by at most the jobs already running.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["DurationStats", "FairScheduler", "estimate_finish"]

J = TypeVar("J", bound=Hashable)

_NEVER_SERVED = -1


@dataclass(slots=True)
class _Owner(Generic[J]):
    arrival: int
    """Tie-break among owners never served yet: first come, first served."""
    max_running: int
    last_served: int = _NEVER_SERVED
    running: int = 0
    waiting: deque[J] = field(default_factory=deque)

    @property
    def key(self) -> tuple[int, int]:
        return (self.last_served, self.arrival)


class FairScheduler(Generic[J]):
    """Waiting jobs per owner, served least-recently-served first within a per-owner running limit.

    The limit is `max_running_per_owner` unless a push gives the owner its own (the latest wins).
    """

    def __init__(self, *, max_running_per_owner: int) -> None:
        if max_running_per_owner < 1:
            raise ValueError(f"max_running_per_owner must be at least 1; got {max_running_per_owner}")
        self.max_running = max_running_per_owner
        self._owners: dict[str, _Owner[J]] = {}
        self._owner_of: dict[J, str] = {}
        self._served = 0
        self._arrivals = 0

    # --- bookkeeping ------------------------------------------------------------------------

    def push(self, owner: str, job: J, *, max_running: int | None = None, front: bool = False) -> None:
        """Put `job` at the back of `owner`'s own line (at its front with `front`, for a job that must
        run again); `max_running` sets the owner's own limit."""
        if job in self._owner_of:
            raise ValueError(f"job {job!r} is already waiting")
        state = self._owner(owner, max_running)
        if front:
            state.waiting.appendleft(job)
        else:
            state.waiting.append(job)
        self._owner_of[job] = owner

    def remove(self, job: J) -> bool:
        """Take a waiting job out of line; False if it was not waiting."""
        owner = self._owner_of.pop(job, None)
        if owner is None:
            return False
        state = self._owners[owner]
        state.waiting.remove(job)
        self._forget_if_idle(owner, state)
        return True

    def pop_next(self, fits: Callable[[J], bool] | None = None) -> tuple[str, J] | None:
        """The next job to start (counted as running from now on), or None if nothing may start.

        With `fits`, only an owner whose next job fits (e.g. a free worker holds its model) is served;
        each owner's jobs still start in the order they came.
        """
        best: _Owner[J] | None = None
        best_name = ""
        for name, state in self._owners.items():
            if (
                state.waiting
                and state.running < state.max_running
                and (best is None or state.key < best.key)
                and (fits is None or fits(state.waiting[0]))
            ):
                best, best_name = state, name
        if best is None:
            return None
        job = best.waiting.popleft()
        del self._owner_of[job]
        best.running += 1
        self._served += 1
        best.last_served = self._served
        return best_name, job

    def add_running(self, owner: str, *, max_running: int | None = None) -> None:
        """Count a job of `owner` that already runs without `pop_next` (one found running after a restart)."""
        self._owner(owner, max_running).running += 1

    def _owner(self, owner: str, max_running: int | None) -> _Owner[J]:
        """`owner`'s state, made on first use; `max_running` (when given) becomes its own limit."""
        if max_running is not None and max_running < 1:
            raise ValueError(f"max_running must be at least 1; got {max_running}")
        state = self._owners.get(owner)
        if state is None:
            self._arrivals += 1
            state = self._owners[owner] = _Owner(arrival=self._arrivals, max_running=self.max_running)
        if max_running is not None:
            state.max_running = max_running
        return state

    def finished(self, owner: str) -> None:
        """A job of `owner` that `pop_next` handed out has ended, however it ended."""
        state = self._owners[owner]
        state.running -= 1
        self._forget_if_idle(owner, state)

    def _forget_if_idle(self, owner: str, state: _Owner[J]) -> None:
        # An owner with nothing running or waiting comes back as a newcomer; this keeps memory
        # bounded by the active owners.
        if not state.waiting and state.running == 0:
            del self._owners[owner]

    # --- queries ----------------------------------------------------------------------------

    def is_waiting(self, job: J) -> bool:
        return job in self._owner_of

    def waiting_count(self, owner: str) -> int:
        state = self._owners.get(owner)
        return len(state.waiting) if state else 0

    def can_run(self, owner: str, max_running: int | None = None) -> bool:
        """Whether one more job of `owner` may run, under `max_running` if given, else its limit."""
        state = self._owners.get(owner)
        if max_running is None:
            max_running = state.max_running if state else self.max_running
        return (state.running if state else 0) < max_running

    def __len__(self) -> int:
        return len(self._owner_of)

    def place_of_newest(self, owner: str) -> int:
        """The 1-based start place of `owner`'s newest waiting job, in time linear in the owners.

        Exact while no running limit can bind (no more workers than any owner's limit): the start
        order is then plain rounds, every backlogged owner once in least-recently-served order,
        then again. With more workers it ignores the limit; `start_order` has the exact answer.
        """
        state = self._owners[owner]
        rounds = len(state.waiting) - 1  # the owner's earlier jobs: one per round before this one
        key = state.key
        place = 1
        for other in self._owners.values():
            # Each owner starts min(waiting, rounds) jobs in the earlier rounds, and one more in
            # this round if it has one and comes first in it.
            waiting = len(other.waiting)
            if waiting <= rounds:
                place += waiting
            else:
                place += rounds + (other.key < key)
        return place

    def start_order(self, running: Sequence[str], workers: int) -> list[J]:
        """Every waiting job in the order it would start, assuming jobs take equally long.

        `running` lists the owners of the running jobs, oldest first; `workers` is how many jobs
        can run at once. Simulates the real policy, running limits included.
        """
        owners = {
            name: _Owner(
                arrival=s.arrival,
                max_running=s.max_running,
                last_served=s.last_served,
                running=s.running,
                waiting=s.waiting,
            )
            for name, s in self._owners.items()
        }
        # Heap of (key, name) of owners that have waiting jobs; entries whose owner is at the
        # running limit are parked until one of their jobs ends.
        ready = [(s.key, name) for name, s in owners.items() if s.waiting and s.running < s.max_running]
        heapq.heapify(ready)
        parked: set[str] = {name for name, s in owners.items() if s.waiting and s.running >= s.max_running}
        busy: deque[str] = deque(running)
        taken = {name: 0 for name in owners}
        order: list[J] = []
        served = self._served
        remaining = len(self._owner_of)
        while remaining:
            if len(busy) >= workers or not ready:
                if not busy:  # only if `running` disagrees with the counts; never loop forever
                    break
                # Every worker is busy (or nobody may start): the oldest running job ends first.
                done = busy.popleft()
                state = owners.get(done) or _Owner(arrival=0, max_running=self.max_running)
                state.running -= 1
                if done in parked:
                    parked.discard(done)
                    heapq.heappush(ready, (state.key, done))
                continue
            _, name = heapq.heappop(ready)
            state = owners[name]
            order.append(state.waiting[taken[name]])
            taken[name] += 1
            remaining -= 1
            served += 1
            state.last_served = served
            state.running += 1
            busy.append(name)
            if taken[name] < len(state.waiting):
                if state.running < state.max_running:
                    heapq.heappush(ready, (state.key, name))
                else:
                    parked.add(name)
        return order


class DurationStats:
    """An exponential moving average of recent job durations on one worker."""

    def __init__(self, *, weight: float = 0.3) -> None:
        self.weight = weight
        self.average: float | None = None

    def add(self, seconds: float) -> None:
        if self.average is None:
            self.average = seconds
        else:
            self.average += self.weight * (seconds - self.average)


def estimate_finish(ahead: int, workers: Iterable[tuple[float | None, float]]) -> float | None:
    """Seconds until a job with `ahead` jobs to start before it is done, by list scheduling.

    `workers` gives each worker's (average job duration or None, seconds until its current job
    ends, 0 if idle). Each waiting job goes to the worker that frees up first. None when no worker
    has finished a job yet, so there is nothing to estimate from.
    """
    known = [(max(left, 0.0), average) for average, left in workers if average is not None]
    if not known:
        return None
    heapq.heapify(known)
    for _ in range(ahead):
        free_at, average = heapq.heappop(known)
        heapq.heappush(known, (free_at + average, average))
    free_at, average = known[0]
    return free_at + average
