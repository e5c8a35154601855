"""Following one job from the queue to its message: progress edits (throttled, latest wins), the
files on disk and in the database, the usage ledger, and the final grid or failure notice."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from bot import job_records as records
from bot.job_types import JobCard, Presenter
from bot.settings import Settings
from bot.store.db import Database
from bot.store.models import Image, Job, JobStatus, UsageEntry
from bot.user_errors import UnknownJob, user_message
from engine.errors import JobCancelled, JobInterrupted
from engine.images import save_job_images
from engine.queue import JobFailed, JobFinished, JobHandle, JobProgress, JobQueue, JobStarted
from engine.types import GenerationRequest, GenerationResult

__all__ = ["JobRunner"]

log = logging.getLogger(__name__)


class JobRunner:
    """Shows each submitted job's life through the presenter and records its outcome."""

    def __init__(
        self, *, db: Database, queue: JobQueue, settings: Settings, clock: Callable[[], datetime]
    ) -> None:
        self.db = db
        self.queue = queue
        self.settings = settings
        self.presenter: Presenter | None = None
        self._clock = clock
        self._requests: dict[str, GenerationRequest] = {}
        self._handles: dict[str, JobHandle] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def submitted(self, job_id: str, handle: JobHandle, request: GenerationRequest) -> None:
        """Remember a job just given to the queue, until `follow` picks it up."""
        self._handles[job_id] = handle
        self._requests[job_id] = request

    def forget(self, job_id: str) -> None:
        """Drop a submitted job that will not be followed (it was taken back)."""
        self._handles.pop(job_id, None)
        self._requests.pop(job_id, None)

    def following(self, job_id: str) -> bool:
        return job_id in self._tasks

    def follow(self, card: JobCard) -> None:
        """Show the job's life in its message (posted now if `card.message_id` is None), in the background."""
        task = asyncio.create_task(self._follow(card), name=f"job-{card.job_id}")
        self._tasks[card.job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(card.job_id, None))

    async def wait_idle(self) -> None:
        """Wait until every submitted job has been followed to its end and shown (tests, shutdown)."""
        while self._tasks or self._handles:
            if self._tasks:
                await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)
            else:  # submitted, and its message is being answered: `follow` comes next
                await asyncio.sleep(0.01)

    async def _follow(self, card: JobCard) -> None:
        presenter = self._presenter()
        handle = self._handles.pop(card.job_id, None) or self.queue.handle(card.job_id)
        if handle is None:
            raise RuntimeError(f"job {card.job_id} was never submitted to the queue")
        if card.message_id is None:
            card = await self._post_waiting(card)
        try:
            result = await self._watch(card, handle)
        except JobInterrupted:
            log.info("job %s interrupted by shutdown; it resumes on the next start", card.job_id)
            return
        except JobCancelled:
            await self.finish(card.job_id, JobStatus.CANCELLED, error="cancelled")
            await presenter.show_failure(card, "cancelled")
            return
        except Exception as exc:  # EngineError, or a bug: either way the owner is told
            await self._fail(card, exc)
            return
        try:
            await self._deliver(card, result)
        except Exception as exc:  # e.g. the disk is full: the images could not be kept
            await self._fail(card, exc)

    async def _fail(self, card: JobCard, error: Exception) -> None:
        reason = user_message(error)
        if await self.finish(card.job_id, JobStatus.FAILED, error=reason):
            await self._presenter().show_failure(card, reason)
        else:  # its images are saved; only showing them failed, and /show can redo that
            log.error("job %s: could not show its result: %s", card.job_id, reason)

    async def _post_waiting(self, card: JobCard) -> JobCard:
        message_id = await self._presenter().show_waiting(card)
        if message_id is not None:
            card = replace(card, message_id=message_id)
            await self.set_message(card.job_id, message_id)
        return card

    async def _watch(self, card: JobCard, handle: JobHandle) -> GenerationResult:
        presenter = self._presenter()
        last_edit = float("-inf")
        async for event in handle.events():
            if isinstance(event, JobStarted):
                await self.mark_running(card.job_id)
            elif isinstance(event, JobProgress):
                now = time.monotonic()
                # Latest wins: the queue coalesces unread progress, we drop what comes too soon.
                if now - last_edit >= self.settings.progress_interval_s:
                    last_edit = now
                    percent = min(99, int(event.progress.fraction * 100))
                    await presenter.show_progress(card, percent, event.progress.preview)
            elif isinstance(event, JobFinished | JobFailed):
                break
        return await handle.result()

    async def _deliver(self, card: JobCard, result: GenerationResult) -> None:
        request = self._requests.pop(card.job_id, None) or await self._load_request(card.job_id)
        folder = self.settings.data_dir / "images" / card.job_id[:2]
        saved = await save_job_images(
            result, request, folder, card.job_id, attachment_limit_bytes=self.settings.attachment_limit_bytes
        )
        rel = self._relative
        async with self.db.session() as session:
            job = await session.get(Job, card.job_id)
            if job is None:
                return
            if saved.grid is not None:
                session.add(
                    Image(
                        job_id=job.id,
                        index=0,
                        seed=None,
                        width=result.width * 2,
                        height=result.height * 2,
                        path=rel(saved.grid),
                    )
                )
            for index, path in enumerate(saved.images, start=1):
                image = result.images[index - 1]
                session.add(
                    Image(
                        job_id=job.id,
                        index=index,
                        seed=result.seeds[index - 1],
                        width=image.width,
                        height=image.height,
                        path=rel(path),
                    )
                )
            job.status = JobStatus.SUCCEEDED
            job.finished_at = self._clock()
            job.gpu_seconds = result.elapsed_s
            job.seeds = list(result.seeds)
            job.grid_path = rel(saved.attachment)
            job.model = result.model
            session.add(
                UsageEntry(
                    job_id=job.id, user_id=job.user_id, guild_id=job.guild_id, gpu_seconds=result.elapsed_s
                )
            )
        log.info("job %s succeeded in %.2fs on the device", card.job_id, result.elapsed_s)
        message_id = await self._presenter().show_result(card, saved.attachment)
        if message_id is not None and message_id != card.message_id:
            await self.set_message(card.job_id, message_id)

    def _relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.settings.data_dir))
        except ValueError:
            return str(path)

    async def _load_request(self, job_id: str) -> GenerationRequest:
        async with self.db.session() as session:
            job = await session.get(Job, job_id)
            if job is None:
                raise UnknownJob(job_id)
            return records.params_to_request(job.params, self.settings.data_dir)

    async def show_failure(self, card: JobCard, reason: str) -> None:
        await self._presenter().show_failure(card, reason)

    def _presenter(self) -> Presenter:
        if self.presenter is None:
            raise RuntimeError("JobService.presenter must be set before jobs are followed")
        return self.presenter

    # --- state changes --------------------------------------------------------------------

    async def set_message(self, job_id: str, message_id: int) -> None:
        async with self.db.session() as session:
            job = await session.get(Job, job_id)
            if job is not None:
                job.message_id = message_id

    async def mark_running(self, job_id: str) -> None:
        async with self.db.session() as session:
            job = await session.get(Job, job_id)
            if job is not None and job.status is JobStatus.QUEUED:
                job.status = JobStatus.RUNNING
                job.started_at = self._clock()
                job.attempts = (job.attempts or 0) + 1
        log.info("job %s running", job_id)

    async def finish(self, job_id: str, status: JobStatus, *, error: str) -> bool:
        """End an unfinished job as `status`; False if it had already ended (nothing changed)."""
        async with self.db.session() as session:
            job = await session.get(Job, job_id)
            if job is None or job.status.finished:
                return False
            job.status = status
            job.error = error
            job.finished_at = self._clock()
        log.info("job %s %s: %s", job_id, status.value, error)
        return True

    async def close(self) -> None:
        """Stop following jobs (the queue decides what happens to them)."""
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)
