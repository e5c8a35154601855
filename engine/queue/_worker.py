"""One worker per device: a daemon thread that runs jobs back to back.

The thread asks the queue for its next job itself as soon as one ends, so the device never waits
for the event loop to come round; the loop only hears what happened (started, done). A dedicated
thread also keeps a device's CUDA context on one thread. It is a daemon thread so a backend stuck
in a call cannot keep the process from exiting after the queue has given up on it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from engine.backend import Backend, ProgressCallback
from engine.errors import EngineError, GenerationError, JobCancelled
from engine.queue._events import JobChannel
from engine.queue._latest import LatestProgress
from engine.queue._scheduler import DurationStats
from engine.types import GenerationRequest, GenerationResult

__all__ = ["DeviceWorker", "Outcome", "QueueJob", "WorkerHost"]

log = logging.getLogger("engine.queue")

Outcome = GenerationResult | EngineError


@dataclass(eq=False, slots=True)
class QueueJob:
    """A job inside the local queue. Fields marked *locked* change only under the queue's lock."""

    job_id: str
    owner: str
    request: GenerationRequest
    channel: JobChannel
    cancel_event: threading.Event | None = None
    """*locked*: made when a worker takes the job (an Event is dear enough to skip for waiting jobs)."""
    cancel_error: JobCancelled | None = None
    """Set when asked to stop the running job; it then ends with this, whatever the backend does."""
    worker: DeviceWorker | None = None
    """*locked*: the worker that took the job; stays set after the job ends."""
    started_at: float = 0.0
    last_position: int | None = None
    progress: LatestProgress = field(default_factory=LatestProgress)
    """Progress from the device thread waits here; the loop is woken once per burst."""


class WorkerHost(Protocol):
    """What a worker needs from its queue; every method is called on the worker's thread."""

    def next_job(self, worker: DeviceWorker, ended: QueueJob) -> QueueJob | None:
        """Book `ended` as over and hand out the worker's next job, or None (the worker then waits)."""
        ...

    def progress_callback(self, job: QueueJob) -> ProgressCallback: ...

    def started(self, job: QueueJob, worker: DeviceWorker) -> None: ...

    def finished(self, job: QueueJob, worker: DeviceWorker, outcome: Outcome, elapsed: float) -> None: ...


class DeviceWorker:
    """A device and the thread that feeds it. `give()` wakes it when idle; `stop()` ends the thread."""

    def __init__(self, name: str, backend: Backend) -> None:
        self.name = name
        self.backend = backend
        self.stats = DurationStats()
        """Touched on the event loop only."""
        self.job: QueueJob | None = None
        """*locked*: the job running now."""
        self._inbox: queue.SimpleQueue[QueueJob | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self, host: WorkerHost) -> None:
        self._thread = threading.Thread(
            target=self._main, args=(host,), name=f"imagine-{self.name}", daemon=True
        )
        self._thread.start()

    def give(self, job: QueueJob) -> None:
        """Hand a job to this idle worker."""
        self._inbox.put(job)

    def stop(self) -> None:
        """End the thread once it is idle."""
        self._inbox.put(None)

    def _main(self, host: WorkerHost) -> None:
        job = self._inbox.get()
        while job is not None:
            outcome, elapsed = self._run(host, job)
            upcoming = host.next_job(self, job)
            host.finished(job, self, outcome, elapsed)
            del outcome  # hold no images while idle
            job = upcoming if upcoming is not None else self._inbox.get()

    def _run(self, host: WorkerHost, job: QueueJob) -> tuple[Outcome, float]:
        host.started(job, self)
        assert job.cancel_event is not None
        outcome: Outcome
        try:
            outcome = self.backend.generate(
                job.request, on_progress=host.progress_callback(job), cancelled=job.cancel_event
            )
        except EngineError as exc:  # JobCancelled included
            outcome = exc
        except BaseException as exc:  # a backend bug must not kill the worker
            log.exception("backend %s failed job %s", self.name, job.job_id)
            outcome = _unexpected(type(exc).__name__)
            outcome.__cause__ = exc
        else:
            if not isinstance(outcome, GenerationResult):
                log.error("backend %s returned %r for job %s", self.name, type(outcome), job.job_id)
                outcome = _unexpected(f"no images but {type(outcome).__name__}")
        return outcome, time.monotonic() - job.started_at


def _unexpected(what: str) -> GenerationError:
    return GenerationError(
        f"The image generator failed unexpectedly ({what}); "
        "try again, and tell the server admin if it keeps happening."
    )
