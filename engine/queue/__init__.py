"""The fair asyncio GPU job queue.

`LocalQueue` runs jobs on one worker per backend (one backend = one device), each on its own
thread so the event loop never stalls, and each taking its next job itself so the device never
waits for the loop. Owners are served round-robin (least recently served first, so a newcomer
goes next), within a per-owner running limit and waiting limit. Callers code against `JobQueue`
and `JobHandle`, so a queue on Redis with remote workers can replace it without changing them.

Events of a job, in order: `JobQueued` (again when its position changes, at most every
`position_interval_s`), `JobStarted`, `JobProgress`…, then exactly one of `JobFinished` /
`JobFailed`; a slow reader misses intermediate `JobQueued`/`JobProgress`, never the rest.
A cancelled job fails with `JobCancelled` (`JobFailed.cancelled` is true); one dropped by
`close()` with its subclass `JobInterrupted`, so the bot can run it again after a restart.

`RemoteQueue` is the same queue for jobs that run on `RemoteWorker` processes (`imaginebot worker`,
one per GPU, on any machine) through Redis Streams; `_wire` describes what crosses Redis.

The parts: `_handle` (the `JobQueue` protocol and `JobHandle`), `_events` (events and their
fan-out), `_scheduler` (who goes next: pure bookkeeping), `_positions` (telling waiting jobs their
place), `_worker` (a device's thread) and `_local` (`LocalQueue`, which wires them together);
`_roster`, `_remote`, `_remote_io` and `_remote_worker` for the remote queue.
"""

from __future__ import annotations

from engine.queue._events import (
    EventStream,
    JobEvent,
    JobFailed,
    JobFinished,
    JobProgress,
    JobQueued,
    JobRetried,
    JobStarted,
)
from engine.queue._handle import JobHandle, JobQueue
from engine.queue._local import LocalQueue
from engine.queue._remote import RemoteQueue
from engine.queue._remote_worker import RemoteWorker, default_worker_name

__all__ = [
    "EventStream",
    "JobEvent",
    "JobFailed",
    "JobFinished",
    "JobHandle",
    "JobProgress",
    "JobQueue",
    "JobQueued",
    "JobRetried",
    "JobStarted",
    "LocalQueue",
    "RemoteQueue",
    "RemoteWorker",
    "default_worker_name",
]
