"""The remote queue against a real Redis, with workers in this process (the fake is the backend only).

Workers killed for real (SIGKILL, SIGSTOP) are in tests/bot/test_remote_workers.py; here each case
is about what crosses Redis: dispatch only to an idle worker that holds the model, events, results
kept until released, cancels, a restart of the bot, a flush of Redis, and refusing a bad Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from PIL import Image

from engine.errors import GenerationError, ImageFlagged, JobCancelled, JobInterrupted, QueueUnavailable
from engine.queue import (
    JobFinished,
    JobHandle,
    JobProgress,
    JobQueued,
    JobStarted,
    RemoteQueue,
    RemoteWorker,
)
from engine.simulated import SimulatedBackend
from engine.types import GenerationRequest, Mode
from tests.engine.queue.conftest import HANG_GUARD_S, request, wait_for
from tests.safety_checkers import flag_red

LEASE_S = 1.0


@dataclass
class Cluster:
    """One bot-side queue and its in-process workers, on one key prefix."""

    url: str
    prefix: str
    queues: list[RemoteQueue] = field(default_factory=list)
    workers: dict[str, tuple[asyncio.Event, asyncio.Task[None]]] = field(default_factory=dict)

    def queue(self, **kwargs: object) -> RemoteQueue:
        options: dict[str, object] = {"prefix": self.prefix, "lease_s": LEASE_S, "model_of": _model_of}
        options.update(kwargs)
        queue = RemoteQueue(self.url, **options)  # type: ignore[arg-type]
        self.queues.append(queue)
        return queue

    async def worker(self, name: str, backend: SimulatedBackend, models: list[str] | None = None) -> None:
        """Start a worker and wait until it serves."""
        worker = RemoteWorker(
            self.url, backend, models=models or [backend.name], name=name, prefix=self.prefix, lease_s=LEASE_S
        )
        stop = asyncio.Event()
        self.workers[name] = (stop, asyncio.create_task(worker.run(stop)))
        client = aioredis.Redis.from_url(self.url)
        try:
            async with asyncio.timeout(HANG_GUARD_S):
                while not await client.exists(f"{self.prefix}:worker:{name}"):  # noqa: ASYNC110 - its hello
                    await asyncio.sleep(0.01)
        finally:
            await client.aclose()

    async def stop_worker(self, name: str) -> None:
        stop, task = self.workers.pop(name)
        stop.set()
        await asyncio.wait_for(task, HANG_GUARD_S)


def _model_of(request: GenerationRequest) -> str:
    return request.model or "sim"


@pytest.fixture
async def cluster(redis7_url: str, redis_prefix: str) -> AsyncIterator[Cluster]:
    made = Cluster(redis7_url, redis_prefix)
    yield made
    for queue in made.queues:
        await queue.close(grace_s=0)
    for stop, task in made.workers.values():
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, HANG_GUARD_S)


async def keys(url: str, prefix: str) -> list[str]:
    client = aioredis.Redis.from_url(url)
    try:
        return sorted([key.decode() async for key in client.scan_iter(match=f"{prefix}:*")])
    finally:
        await client.aclose()


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(HANG_GUARD_S):
        while not await condition():  # noqa: ASYNC110 - what changes is in Redis or another task
            await asyncio.sleep(0.01)


async def outcome(handle: JobHandle) -> object:
    async with asyncio.timeout(HANG_GUARD_S):
        try:
            return await handle.result()
        except Exception as exc:
            return exc


# --- the path of a job -------------------------------------------------------------------------


async def test_a_job_runs_on_a_worker_and_its_copy_in_redis_goes_when_released(cluster: Cluster) -> None:
    await cluster.worker("w1", SimulatedBackend(seconds=0.05, steps=4, previews=True, name="sim"))
    queue = cluster.queue()
    await queue.start()
    handle = await queue.submit("alice", request("a fox", seed=7))
    events = [event async for event in handle.events()]
    kinds = [type(event) for event in events]
    assert kinds[0] is JobQueued
    assert JobStarted in kinds
    assert JobProgress in kinds
    assert isinstance(events[-1], JobFinished)
    assert events[-1].attempt == 1
    started = next(event for event in events if isinstance(event, JobStarted))
    assert (started.worker, started.attempt) == ("w1", 1)
    progress = [event.progress for event in events if isinstance(event, JobProgress)]
    assert progress[-1].preview is not None
    assert progress[-1].preview.size == (8, 8)
    result = await handle.result()
    assert result.seeds == (7, 8, 9, 10)
    assert [image.getpixel((0, 0)) for image in result.images] == [
        ((seed * 67) % 256, (seed * 131) % 256, (seed * 197) % 256) for seed in (7, 8, 9, 10)
    ]
    held = await keys(cluster.url, cluster.prefix)
    assert f"{cluster.prefix}:result:{handle.job_id}:1" in held
    assert f"{cluster.prefix}:inflight" in held
    await handle.release()
    held = await keys(cluster.url, cluster.prefix)
    assert f"{cluster.prefix}:result:{handle.job_id}:1" not in held
    assert f"{cluster.prefix}:inflight" not in held


async def test_a_job_goes_only_to_a_worker_that_holds_its_model(cluster: Cluster) -> None:
    gate = threading.Event()  # held until every job's events are subscribed to
    await cluster.worker("plain", SimulatedBackend(seconds=0.02, steps=2, name="sim", gate=gate))
    await cluster.worker("anime", SimulatedBackend(seconds=0.02, steps=2, name="anime-model", gate=gate))
    queue = cluster.queue()
    await queue.start()
    niji = [
        await queue.submit("bob", GenerationRequest(prompt=f"n{i}", model="anime-model")) for i in range(3)
    ]
    plain = [await queue.submit("carol", request(f"p{i}")) for i in range(3)]
    starts = [asyncio.create_task(wait_for(handle.events(), JobStarted)) for handle in niji + plain]
    gate.set()
    workers = [(await start).worker for start in starts]
    assert workers == ["anime"] * 3 + ["plain"] * 3
    assert {(await handle.result()).model for handle in niji} == {"anime-model"}
    assert {(await handle.result()).model for handle in plain} == {"sim"}


async def test_a_newcomer_goes_before_another_members_backlog(cluster: Cluster) -> None:
    gate = threading.Event()
    await cluster.worker("w1", SimulatedBackend(seconds=0, steps=2, name="sim", gate=gate))
    queue = cluster.queue()
    await queue.start()
    backlog = [await queue.submit("hog", request(f"h{i}")) for i in range(5)]
    await wait_for(backlog[0].events(), JobStarted)
    newcomer = await queue.submit("newcomer", request("n"))
    assert queue.position(newcomer.job_id) == 1  # next, before the rest of the backlog
    assert [queue.position(handle.job_id) for handle in backlog[1:]] == [2, 3, 4, 5]
    gate.set()
    await outcome(newcomer)
    assert isinstance(await outcome(backlog[1]), object)
    assert queue.position(backlog[1].job_id) is None


async def test_no_worker_yet_means_the_job_waits_then_runs_when_one_comes(cluster: Cluster) -> None:
    queue = cluster.queue()
    await queue.start()
    handle = await queue.submit("alice", request("patient"))
    assert queue.position(handle.job_id) == 1
    await cluster.worker("late", SimulatedBackend(seconds=0.01, steps=1, name="sim"))
    assert isinstance(await outcome(handle), object)
    assert (await handle.result()).seeds == (0, 1, 2, 3)


async def test_a_job_whose_source_image_is_gone_fails_with_a_reason_and_the_worker_goes_on(
    cluster: Cluster, tmp_path: Path
) -> None:
    await cluster.worker("w1", SimulatedBackend(seconds=0.01, steps=1, name="sim"))
    queue = cluster.queue()
    await queue.start()
    gone = replace(
        request("a variation"), mode=Mode.VARIATION, init_image=tmp_path / "gone.png", strength=0.5
    )
    failed = await outcome(await queue.submit("alice", gone))
    assert isinstance(failed, GenerationError)
    assert "source image cannot be read" in str(failed)
    assert getattr(await outcome(await queue.submit("alice", request("next"))), "seeds", None) == (0, 1, 2, 3)


async def test_the_safety_checks_verdicts_cross_redis(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.worker("w1", SimulatedBackend(seconds=0.01, steps=1, name="sim", safety_checker=flag_red()))
    queue = cluster.queue()
    await queue.start()
    # Seeds 2-5 paint reds 134, 201, 12, 79: cells 1 and 2 are over the test checker's 128.
    result = await outcome(await queue.submit("alice", request("a fox", seed=2)))
    assert getattr(result, "flagged", None) == (True, True, False, False)
    assert getattr(result, "checker", None) == "red-test"

    red = tmp_path / "red.png"
    Image.new("RGB", (64, 64), (250, 0, 0)).save(red)
    start = replace(request("from a picture"), mode=Mode.IMAGE, init_image=red, sources=("0" * 64,))
    failed = await outcome(await queue.submit("alice", start))
    assert isinstance(failed, ImageFlagged)
    assert (
        str(failed) == "Your picture was flagged by this server's safety check, so nothing was made from it."
    )
    allowed = await outcome(await queue.submit("alice", replace(start, allow_flagged_input=True)))
    assert len(getattr(allowed, "flagged", ())) == 4


# --- cancel ----------------------------------------------------------------------------------------


async def test_cancel_reaches_a_waiting_job_at_once_and_a_running_one_at_its_next_step(
    cluster: Cluster,
) -> None:
    backend = SimulatedBackend(seconds=30, steps=300, name="sim")  # runs until stopped
    await cluster.worker("w1", backend)
    queue = cluster.queue()
    await queue.start()
    running = await queue.submit("alice", request("long"))
    waiting = await queue.submit("alice", request("next"))
    await wait_for(running.events(), JobStarted)
    assert await queue.cancel(waiting.job_id)
    assert isinstance(await outcome(waiting), JobCancelled)
    assert await queue.cancel(running.job_id)
    assert isinstance(await outcome(running), JobCancelled)
    assert [call.prompt for call in backend.calls] == ["long"]  # the waiting one never reached it
    await running.release()


# --- a restart of the bot, and Redis losing everything -------------------------------------------


async def test_a_result_that_comes_while_the_bot_is_down_is_delivered_after_its_restart(
    cluster: Cluster,
) -> None:
    gate = threading.Event()
    await cluster.worker("w1", SimulatedBackend(seconds=0, steps=2, name="sim", gate=gate))
    first = cluster.queue()
    await first.start()
    handle = await first.submit("alice", request("across a restart", seed=3))
    await wait_for(handle.events(), JobStarted)
    await first.close(grace_s=0)  # the bot goes away; the job goes on on its worker
    assert isinstance(await outcome(handle), JobInterrupted)
    gate.set()
    await until(lambda: _has_results(cluster))

    second = cluster.queue()
    await second.start()
    resumed = await second.submit("alice", request("across a restart", seed=3), job_id=handle.job_id)
    result = await outcome(resumed)
    assert getattr(result, "seeds", None) == (3, 4, 5, 6)
    await resumed.release()


async def _has_results(cluster: Cluster) -> bool:
    client = aioredis.Redis.from_url(cluster.url)
    try:
        return bool(await client.xlen(f"{cluster.prefix}:results"))
    finally:
        await client.aclose()


async def test_when_redis_is_flushed_every_unfinished_job_still_finishes(cluster: Cluster) -> None:
    gate = threading.Event()
    await cluster.worker("w1", SimulatedBackend(seconds=0, steps=2, name="sim", gate=gate))
    queue = cluster.queue()
    await queue.start()
    handles = [await queue.submit(owner, request(owner)) for owner in ("a", "b", "c")]
    await wait_for(handles[0].events(), JobStarted)
    client = aioredis.Redis.from_url(cluster.url)
    try:
        for key in await keys(cluster.url, cluster.prefix):
            await client.delete(key)  # what FLUSHDB would do to this test's keys
    finally:
        await client.aclose()
    gate.set()
    results = [await outcome(handle) for handle in handles]
    assert [getattr(result, "seeds", result) for result in results] == [(0, 1, 2, 3)] * 3


# --- refusals -------------------------------------------------------------------------------------


async def test_an_unreachable_redis_is_one_sentence() -> None:
    queue = RemoteQueue("redis://127.0.0.1:1/0", model_of=_model_of)
    with pytest.raises(
        QueueUnavailable, match=r"^Cannot reach Redis at redis://127\.0\.0\.1:1/0 .*IMAGINE_QUEUE_URL"
    ):
        await queue.start()


async def test_a_password_in_the_url_is_not_shown() -> None:
    with pytest.raises(QueueUnavailable) as refused:
        await RemoteWorker.check("redis://user:hunter2@127.0.0.1:1/0")
    assert "hunter2" not in str(refused.value)
    assert "redis://user:***@127.0.0.1:1/0" in str(refused.value)


async def test_redis_older_than_7_is_refused(old_redis: str) -> None:
    with pytest.raises(QueueUnavailable, match=r"version 6\.2\.14; imaginebot needs Redis 7 or newer"):
        await RemoteWorker.check(old_redis)
