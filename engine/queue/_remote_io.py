"""The Redis side of `RemoteQueue`: giving jobs to workers, reading their events and results, and the
reaper that takes back jobs from workers that stopped answering. Decisions stay with the queue (`Book`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any, Protocol

from engine.queue._roster import RemoteJob
from engine.queue._wire import (
    BOTS_GROUP,
    WORKERS_GROUP,
    Fields,
    Keys,
    connect,
    job_fields,
    text,
)

__all__ = ["Book", "RemoteIO"]

log = logging.getLogger("engine.queue")

_BLOCK_MS = 1000


class Book(Protocol):
    """What the Redis side reports to, and asks of, the queue's bookkeeping."""

    def worker_seen(
        self, name: str, models: list[str], reported_job: str = "", renewed_at: float | None = None
    ) -> None: ...

    def worker_gone(self, name: str, reason: str) -> None: ...

    def on_event(self, fields: Fields) -> None: ...

    async def on_result(
        self, entry: str, fields: Fields, fetch: Callable[[str, int], Awaitable[Any]]
    ) -> bool: ...

    def lost_workers(self, now: float) -> list[RemoteJob]: ...

    def unclaimed(self, now: float) -> list[RemoteJob]: ...

    def job_on(self, job_id: str, attempt: int) -> RemoteJob | None: ...

    def retry(self, job: RemoteJob, reason: str) -> None: ...

    def resume_on(self, job: RemoteJob, worker: str, attempt: int) -> None: ...


class RemoteIO:
    """Every Redis call of the bot's side of the remote queue."""

    def __init__(self, url: str, *, prefix: str, lease_s: float, book: Book) -> None:
        self.url = url
        self.keys = Keys(prefix)
        self.lease_s = lease_s
        self._book = book
        self._redis: Any = None
        self._events_reader: Any = None
        self._results_reader: Any = None
        self._consumer = "bot"
        """One bot per prefix: the same consumer after a restart, so results it was given but had not
        stored come to it again (`XREADGROUP … 0`)."""
        self._inflight: dict[str, dict[str, Any]] = {}
        """In flight before this start (job id → worker, attempt), until the bot resumes or drops them."""
        self._parked: dict[str, tuple[str, Fields]] = {}
        """Results for jobs in flight before this start, until the bot resumes them."""
        self._streams: set[str] = set()
        """Workers whose dispatch streams may hold entries (the reaper's rounds)."""
        self._started_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._outage: str | None = None

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._redis = await connect(self.url)
        block_s = _BLOCK_MS / 1000
        self._events_reader = await connect(self.url, socket_timeout=block_s + 10)
        self._results_reader = await connect(self.url, socket_timeout=block_s + 10)
        await self._ensure_results_group()
        self._inflight = {
            job.decode(): json.loads(value)
            for job, value in (await self._redis.hgetall(self.keys.inflight)).items()
        }
        await self._scan_workers()
        self._started_at = time.monotonic()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._forever("events", self._read_events)),
            loop.create_task(self._forever("results", self._read_results)),
            loop.create_task(self._forever("reaper", self._reap)),
        ]

    async def close(self) -> None:
        # The loops end by themselves within one blocking read: cancelling a redis-py call in the
        # middle of a read can leave it waiting forever on its connection.
        self._stop.set()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=_BLOCK_MS / 1000 + 5)
            for task in stuck:
                task.cancel()
        for client in (self._redis, self._events_reader, self._results_reader):
            if client is not None:
                await client.aclose()

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds`, or less if the queue closes meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    def later(self, callback: Callable[[], object], delay_s: float) -> None:
        asyncio.get_running_loop().call_later(delay_s, callback)

    # --- what the queue asks for ---------------------------------------------------------------

    def resume(self, job: RemoteJob) -> bool:
        """Whether `job` was in flight before this start; if so it is booked where it runs (and its
        result, if it came meanwhile, is handed over)."""
        record = self._inflight.pop(job.job_id, None)
        if record is None:
            return False
        self._book.resume_on(job, str(record["worker"]), int(record["attempt"]))
        self._streams.add(str(record["worker"]))
        parked = self._parked.pop(job.job_id, None)
        if parked is not None:
            asyncio.get_running_loop().create_task(self._deliver(*parked))
        return True

    async def give(self, job: RemoteJob, worker: str, init: bytes | None) -> None:
        """Put `job` and its source image's bytes on `worker`'s dispatch stream; note it is in flight."""
        request = replace(job.request, model=job.model, init_image=None)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.keys.dispatch(worker), job_fields(job.job_id, job.attempt, request, init))
            pipe.hset(self.keys.inflight, job.job_id, json.dumps({"worker": worker, "attempt": job.attempt}))
            await pipe.execute()
        self._streams.add(worker)

    async def cancel(self, job: RemoteJob) -> None:
        """Tell the worker running `job` (or about to) to stop at its next step."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.cancelled(job.job_id), str(job.attempt), ex=3600)
            pipe.publish(self.keys.cancel_channel, job.job_id)
            await pipe.execute()

    async def release(self, job_id: str, entry: str, attempt: int) -> None:
        """Forget a job whose outcome the bot has stored."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.keys.results, BOTS_GROUP, entry)
            pipe.xdel(self.keys.results, entry)
            pipe.delete(self.keys.result(job_id, attempt), self.keys.cancelled(job_id))
            pipe.hdel(self.keys.inflight, job_id)
            await pipe.execute()

    # --- loops ------------------------------------------------------------------------------------

    async def _forever(self, name: str, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a reading loop; while Redis is away, say so once and try again every second."""
        from redis.exceptions import RedisError

        while not self._stop.is_set():
            try:
                await loop()
            except (RedisError, OSError) as exc:
                if self._outage is None:
                    log.warning("Redis is not answering (%s); jobs in flight wait, retrying", exc)
                self._outage = str(exc)
                await self._pause(1.0)
            else:
                if self._outage is not None:
                    log.info("Redis answers again")
                    self._outage = None

    async def _read_events(self) -> None:
        last = "$"
        while not self._stop.is_set():
            reply = await self._events_reader.xread({self.keys.events: last}, count=500, block=_BLOCK_MS)
            for _stream, entries in reply or ():
                for entry, fields in entries:
                    last = entry
                    if text(fields, "type") == "hello":
                        self._book.worker_seen(
                            text(fields, "worker"), json.loads(text(fields, "models", "[]"))
                        )
                    else:
                        self._book.on_event(fields)

    async def _read_results(self) -> None:
        from redis.exceptions import ResponseError

        last = "0"  # first the results this bot was given before a restart, then new ones
        while not self._stop.is_set():
            try:
                reply = await self._results_reader.xreadgroup(
                    BOTS_GROUP, self._consumer, {self.keys.results: last}, count=50, block=_BLOCK_MS
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("the results group is gone (Redis was flushed?); making it again")
                await self._ensure_results_group()
                last = "0"
                continue
            entries = reply[0][1] if reply else []
            if last != ">" and not entries:
                last = ">"
            for entry, fields in entries:
                if last != ">":
                    last = entry.decode()
                await self._deliver(entry.decode(), fields)

    async def _deliver(self, entry: str, fields: Fields) -> None:
        if await self._book.on_result(entry, fields, self._fetch):
            return
        job_id = text(fields, "job")
        if job_id in self._inflight:  # a job the bot will resume once it reads its database
            self._parked[job_id] = (entry, fields)
        else:  # a run that was replaced by a newer one, or a job already done: drop it
            await self.release(job_id, entry, int(text(fields, "attempt", "0")))

    async def _fetch(self, job_id: str, attempt: int) -> Any:
        return await self._redis.hgetall(self.keys.result(job_id, attempt))

    async def _reap(self) -> None:
        """Every third of a lease: who is alive, and which jobs must run again elsewhere."""
        while not self._stop.is_set():
            await self._pause(max(self.lease_s / 3, 0.2))
            if self._stop.is_set():
                return
            await self._scan_workers()
            now = time.monotonic()
            for job in self._book.lost_workers(now):
                self._book.retry(job, "its worker stopped answering")
            for job in self._book.unclaimed(now):
                self._book.retry(job, "its worker never took it (Redis may have lost it)")
            for worker in list(self._streams):
                await self._reclaim_expired(worker)
            if now - self._started_at > max(60.0, 4 * self.lease_s):
                await self._drop_unresumed()

    async def _reclaim_expired(self, worker: str) -> None:
        """Take back entries a worker has not renewed for a lease (`XAUTOCLAIM`)."""
        from redis.exceptions import ResponseError

        stream = self.keys.dispatch(worker)
        try:
            _next, claimed, *_deleted = await self._redis.xautoclaim(
                stream, WORKERS_GROUP, "reaper", min_idle_time=int(self.lease_s * 1000), count=100
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc) or "no such key" in str(exc).lower():
                self._streams.discard(worker)
                return
            raise
        for entry, fields in claimed:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xack(stream, WORKERS_GROUP, entry)
                pipe.xdel(stream, entry)
                await pipe.execute()
            reason = f"worker {worker} let its lease on the job run out"
            job = self._book.job_on(text(fields, "job"), int(text(fields, "attempt", "0")))
            if job is not None:
                self._book.retry(job, reason)
            self._book.worker_gone(worker, reason)  # until its heartbeat says otherwise

    async def _scan_workers(self) -> None:
        """Every worker's heartbeat, and when it was last renewed (its expiry is the lease)."""
        async for key in self._redis.scan_iter(match=self.keys.workers_pattern, count=200):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(key)
                pipe.pttl(key)
                fields, ttl_ms = await pipe.execute()
            if fields and ttl_ms > 0:
                name = key.decode().rsplit(":", 1)[-1]
                renewed_at = time.monotonic() - max(0.0, self.lease_s - ttl_ms / 1000)
                models = json.loads(text(fields, "models", "[]"))
                self._book.worker_seen(name, models, text(fields, "job"), renewed_at)
                self._streams.add(name)

    async def _drop_unresumed(self) -> None:
        """What was in flight before this start and the bot never asked for (its job had ended)."""
        for job_id, (entry, fields) in list(self._parked.items()):
            del self._parked[job_id]
            await self.release(job_id, entry, int(text(fields, "attempt", "0")))
        if self._inflight:
            await self._redis.hdel(self.keys.inflight, *self._inflight)
            self._inflight.clear()

    async def _ensure_results_group(self) -> None:
        from redis.exceptions import ResponseError

        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
            await self._redis.xgroup_create(self.keys.results, BOTS_GROUP, id="0", mkstream=True)
