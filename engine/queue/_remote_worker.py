"""`RemoteWorker`: the worker side of the remote queue — one process, one backend (one GPU).

It only connects out to Redis, so it may sit behind NAT. It reads the jobs the bot gives it from its
own dispatch stream, runs each on a dedicated device thread, streams progress and previews, and
returns the images through Redis. While a job runs it renews its claim on the job's entry every
third of the lease; if the bot took the job back meanwhile (the lease ran out), it stops the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.backend import Backend
from engine.errors import EngineError, GenerationError, JobCancelled
from engine.queue._latest import LatestProgress
from engine.queue._wire import (
    WORKERS_GROUP,
    Fields,
    Keys,
    connect,
    error_fields,
    progress_fields,
    read_job,
    result_payload,
)
from engine.types import GenerationRequest, GenerationResult, Progress

__all__ = ["RemoteWorker", "default_worker_name"]

log = logging.getLogger("engine.worker")

_EVENTS_MAXLEN = 10_000
_BLOCK_MS = 1000
_PROGRESS_EVERY_S = 0.1
"""Progress and previews go to the bot at most ten times a second (Discord shows one every 2 s)."""


def default_worker_name() -> str:
    """Unique per process: `<host>-<pid>-<random>`, so a restarted worker never sees a dead one's jobs."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


@dataclass(eq=False)
class _Running:
    """The job on the device now."""

    job_id: str
    attempt: int
    entry: str
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: LatestProgress = field(default_factory=LatestProgress)
    announced: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once "started" is sent: progress never overtakes it."""


class RemoteWorker:
    """Runs the jobs a bot gives it through Redis at `url`, on `backend`, until `stop` is set."""

    def __init__(
        self,
        url: str,
        backend: Backend,
        *,
        models: Sequence[str],
        name: str | None = None,
        prefix: str = "imaginebot",
        lease_s: float = 30.0,
        result_ttl_s: int = 86_400,
    ) -> None:
        """`models`: the model ids this worker can run (the bot gives it only jobs for those)."""
        self.url = url
        self.backend = backend
        self.models = list(models)
        self.name = name or default_worker_name()
        self.keys = Keys(prefix)
        self.lease_s = lease_s
        self.result_ttl_s = result_ttl_s
        self._redis: Any = None
        self._reader: Any = None
        self._device = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"imagine-{self.name}")
        self._running: _Running | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @staticmethod
    async def check(url: str) -> None:
        """Raise `QueueUnavailable` (one sentence) unless Redis at `url` answers and is new enough."""
        client = await connect(url)
        await client.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve jobs until `stop` is set; the job on the device then finishes first. Raises
        `QueueUnavailable` with one sentence when Redis cannot be used."""
        self._loop = asyncio.get_running_loop()
        self._redis = await connect(self.url)
        self._reader = await connect(self.url, socket_timeout=_BLOCK_MS / 1000 + 10)
        scratch = tempfile.TemporaryDirectory(prefix="imaginebot-worker-")  # source images of the jobs
        workdir = Path(scratch.name)
        try:
            await self._ensure_group()
            await self._heartbeat()
            await self._redis.xadd(
                self.keys.events,
                {"type": "hello", "worker": self.name, "models": json.dumps(self.models)},
                maxlen=_EVENTS_MAXLEN,
                approximate=True,
            )
            log.info("worker %s serving %s", self.name, ", ".join(self.models))
            helpers = [
                asyncio.create_task(self._keep_alive(stop)),
                asyncio.create_task(self._listen_for_cancels(stop)),
            ]
            try:
                await self._serve(stop, workdir)
            finally:
                stop.set()  # the helpers end within a second; a cancelled redis-py read can hang
                await asyncio.gather(*helpers, return_exceptions=True)
                with contextlib.suppress(Exception):  # going away anyway
                    await self._redis.delete(self.keys.worker(self.name))
                    await self._redis.xadd(self.keys.events, {"type": "bye", "worker": self.name})
        finally:
            self._device.shutdown(wait=False, cancel_futures=True)
            for client in (self._redis, self._reader):
                await client.aclose()
            await asyncio.to_thread(scratch.cleanup)

    # --- the loop -----------------------------------------------------------------------------

    async def _serve(self, stop: asyncio.Event, workdir: Path) -> None:
        from redis.exceptions import RedisError, ResponseError

        stream = self.keys.dispatch(self.name)
        while not stop.is_set():
            try:
                reply = await self._reader.xreadgroup(
                    WORKERS_GROUP, self.name, {stream: ">"}, count=1, block=_BLOCK_MS
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._ensure_group()  # Redis lost it (flushed or restarted)
                continue
            except (RedisError, OSError) as exc:
                log.warning("Redis is not answering (%s); retrying", exc)
                await _stopped(stop, 1.0)
                continue
            for _stream, entries in reply or ():
                for entry, fields in entries:
                    await self._run_one(entry.decode(), fields, workdir)

    async def _run_one(self, entry: str, fields: Fields, workdir: Path) -> None:
        try:  # with a source image, this writes it to a file
            job_id, attempt, request = await asyncio.to_thread(read_job, fields, workdir)
        except Exception:  # not a job this worker can read (another version of imaginebot?): drop it
            log.exception("dropping dispatch entry %s, which is not a job this worker understands", entry)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xack(self.keys.dispatch(self.name), WORKERS_GROUP, entry)
                pipe.xdel(self.keys.dispatch(self.name), entry)
                await pipe.execute()
            return
        running = self._running = _Running(job_id, attempt, entry)
        began = time.monotonic()
        try:
            # The device starts at once; saying so takes one round trip beside it, and a cancel that
            # came before the job did stops it at its first step.
            loop = asyncio.get_running_loop()
            generating = loop.run_in_executor(self._device, self._generate, request, running)
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.exists(self.keys.cancelled(job_id))
                    self._heartbeat_into(pipe)
                    self._event_into(pipe, {"type": "started", "job": job_id, "attempt": str(attempt)})
                    cancelled, *_ = await pipe.execute()
                if cancelled:
                    running.cancel.set()
            except Exception as exc:  # Redis away: the job runs anyway, its result says the rest
                log.warning("job %s: could not say it started (%s)", job_id, exc)
            finally:
                running.announced.set()
            outcome = await generating
            await self._report_until_heard(running, outcome, time.monotonic() - began)
        finally:
            self._running = None
            if request.init_image is not None:
                await asyncio.to_thread(request.init_image.unlink, missing_ok=True)

    def _generate(self, request: GenerationRequest, running: _Running) -> GenerationResult | EngineError:
        """On the device thread: one job, its failures turned into values."""

        def on_progress(progress: Progress) -> None:
            if running.progress.put(progress):
                assert self._loop is not None
                self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._send_progress(running)))

        try:
            return self.backend.generate(request, on_progress=on_progress, cancelled=running.cancel)
        except EngineError as exc:
            return exc
        except Exception as exc:  # a backend bug must not end the worker
            log.exception("job %s failed unexpectedly", running.job_id)
            return GenerationError(
                f"The image generator failed unexpectedly ({type(exc).__name__}); try again, and tell the "
                "server admin if it keeps happening."
            )

    async def _send_progress(self, running: _Running) -> None:
        """Send the latest progress, then after a pause the latest again (latest wins, the rest is
        dropped): at most `_PROGRESS_EVERY_S` apart, which is still far more often than a chat shows."""
        await running.announced.wait()
        while (progress := running.progress.take()) is not None:
            fields = {"type": "progress", "job": running.job_id, "attempt": str(running.attempt)}
            with contextlib.suppress(Exception):  # a lost progress event is replaced by the next
                await self._event({**fields, **progress_fields(progress)})
            await asyncio.sleep(_PROGRESS_EVERY_S)

    async def _report_until_heard(
        self, running: _Running, outcome: GenerationResult | EngineError, elapsed: float
    ) -> None:
        """Report the outcome, retrying while Redis is away for up to a lease (after that the bot has
        given the job to another worker, and this result would be dropped anyway)."""
        give_up = time.monotonic() + self.lease_s
        while True:
            try:
                await self._report(running, outcome, elapsed)
                return
            except Exception as exc:
                if time.monotonic() > give_up:
                    log.error(
                        "job %s: its outcome could not be reported (%s); the bot runs it again",
                        running.job_id,
                        exc,
                    )
                    return
                log.warning("job %s: reporting its outcome failed (%s); retrying", running.job_id, exc)
                await asyncio.sleep(1.0)

    async def _report(
        self, running: _Running, outcome: GenerationResult | EngineError, elapsed: float
    ) -> None:
        fields: dict[str, Any] = {
            "job": running.job_id,
            "attempt": str(running.attempt),
            "worker": self.name,
            "elapsed": f"{elapsed:.6f}",
            "at": f"{time.time():.6f}",
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            if isinstance(outcome, GenerationResult):
                pixels = sum(image.width * image.height for image in outcome.images)
                # Copying a few small images is quicker than a trip to a thread.
                payload = (
                    await asyncio.to_thread(result_payload, outcome)
                    if pixels > 2**20
                    else result_payload(outcome)
                )
                key = self.keys.result(running.job_id, running.attempt)
                pipe.hset(key, mapping=payload)
                pipe.expire(key, self.result_ttl_s)
                pipe.xadd(self.keys.results, {**fields, "status": "ok"})
            else:
                pipe.xadd(self.keys.results, {**fields, "status": "failed", **error_fields(outcome)})
            stream = self.keys.dispatch(self.name)
            pipe.xack(stream, WORKERS_GROUP, running.entry)
            pipe.xdel(stream, running.entry)
            self._heartbeat_into(pipe, idle=True)
            await pipe.execute()
        log.info("job %s run %d: %s in %.2fs", running.job_id, running.attempt, _outcome(outcome), elapsed)

    # --- staying in touch -------------------------------------------------------------------------

    async def _keep_alive(self, stop: asyncio.Event) -> None:
        """Every third of the lease: the heartbeat, the claim on the running job, a missed cancel."""
        while not await _stopped(stop, self.lease_s / 3):
            with contextlib.suppress(Exception):  # Redis away: the next round tries again
                await self._heartbeat()
                await self._renew()

    async def _heartbeat(self) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            self._heartbeat_into(pipe)
            await pipe.execute()

    def _heartbeat_into(self, pipe: Any, *, idle: bool = False) -> None:
        """Queue the heartbeat (models, current job; the lease as expiry) onto `pipe`."""
        running = None if idle else self._running
        key = self.keys.worker(self.name)
        pipe.hset(
            key,
            mapping={
                "models": json.dumps(self.models),
                "job": running.job_id if running else "",
                "attempt": str(running.attempt) if running else "",
            },
        )
        pipe.expire(key, max(1, round(self.lease_s)))

    async def _renew(self) -> None:
        running = self._running
        if running is None:
            return
        claimed = await self._redis.xclaim(
            self.keys.dispatch(self.name), WORKERS_GROUP, self.name, 0, [running.entry], justid=True
        )
        taken_back = not claimed
        cancelled = await self._redis.exists(self.keys.cancelled(running.job_id))
        if taken_back or cancelled:
            if taken_back:
                log.warning(
                    "job %s was taken back by the bot (the lease ran out); stopping it", running.job_id
                )
            running.cancel.set()

    async def _listen_for_cancels(self, stop: asyncio.Event) -> None:
        """Stop the running job when the bot cancels it (`_renew` also checks, in case one is missed)."""
        while not stop.is_set():
            pubsub = self._reader.pubsub()
            try:
                await pubsub.subscribe(self.keys.cancel_channel)
                while not stop.is_set():
                    # A timeout, not `listen()`: cancelling a redis-py read midway can leave it stuck.
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                    running = self._running
                    if message and running and message["data"].decode() == running.job_id:
                        running.cancel.set()
            except Exception as exc:  # reconnect
                log.debug("cancel listener: %s", exc)
                await _stopped(stop, 1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _event(self, fields: dict[str, Any]) -> None:
        await self._redis.xadd(
            self.keys.events, self._stamped(fields), maxlen=_EVENTS_MAXLEN, approximate=True
        )

    def _event_into(self, pipe: Any, fields: dict[str, Any]) -> None:
        pipe.xadd(self.keys.events, self._stamped(fields), maxlen=_EVENTS_MAXLEN, approximate=True)

    def _stamped(self, fields: dict[str, Any]) -> dict[str, Any]:
        # `at`: the worker's clock, for measuring how long news takes to reach the bot (bench/).
        return {**fields, "worker": self.name, "at": f"{time.time():.6f}"}

    async def _ensure_group(self) -> None:
        from redis.exceptions import ResponseError

        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
            await self._redis.xgroup_create(
                self.keys.dispatch(self.name), WORKERS_GROUP, id="0", mkstream=True
            )


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds` or until `stop` is set; whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


def _outcome(outcome: GenerationResult | EngineError) -> str:
    if isinstance(outcome, GenerationResult):
        return "done"
    return "cancelled" if isinstance(outcome, JobCancelled) else f"failed ({outcome})"
