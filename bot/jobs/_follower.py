"""Following one submitted job to its end: its message, progress (throttled, latest wins), then the
grid posted, the files on disk, the job row and the usage ledger — or the failure notice.

A finished job's grid is posted first: between the device's last step and the upload there is only
the grid, encoded in the Discord format (`IMAGINE_DISCORD_IMAGE_FORMAT`). The PNGs (each image and the
grid, with their recipes) are written meanwhile on other threads, and only once they are all on disk
does the job row become `succeeded`, naming them (with its usage-ledger row, in one transaction). So:
- the row never names a file that is not there: after a crash between the post and that write, the
  job is still `running`, and the next start queues it again (`JobService._recover`) and shows it in
  the same message; until then its buttons answer that the job has no images yet;
- a button pressed on the grid before its files are written waits for them (`delivered`), at most
  `DELIVERY_WAIT_S`, rather than failing;
- a write that fails (a full disk) fails the job, and the posted grid is replaced by the failure notice.

Images the safety check flagged are posted only in age-restricted channels, as the server's rule says
(spoiler or plainly); anywhere else, or where the rule is `block`, they are neither saved nor posted
and the job ends `moderated`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from bot.config import Config
from bot.errors import BotError, user_message
from bot.jobs.types import JobCard, JobTicket, Notify, Presenter
from bot.policy import FlaggedImages, flagged_images_get, withheld_reason
from bot.store import queries as q
from bot.store.db import Database
from bot.store.errors import JobStateError, StaleAttempt
from engine.errors import ImageFlagged, JobInterrupted, PromptRefused
from engine.images import ImageFormat, SavedImages, prepare_job_images
from engine.queue import EventStream, JobFailed, JobFinished, JobProgress, JobRetried, JobStarted
from engine.types import GenerationRequest, GenerationResult

__all__ = ["JobFollower"]

log = logging.getLogger("bot.jobs")

DELIVERY_WAIT_S = 1.5
"""How long a button press waits for the files of a grid it sees: within Discord's 3 s to answer."""


class JobFollower:
    """Shows each job's life through the presenter and records every state change in the store."""

    def __init__(
        self,
        *,
        db: Database,
        config: Config,
        presenter: Presenter,
        clock: Callable[[], datetime],
        previews_everywhere: bool = True,
        hosted: Callable[[GenerationRequest], bool] = lambda request: False,
    ) -> None:
        """`previews_everywhere`: False when images are safety-checked, since previews are not: they
        are then shown only where flagged images may be (`GenerationRequest.allow_flagged_input`).
        `hosted(request)`: a paid API makes the job's images (the ledger counts them apart)."""
        self.hosted = hosted
        self.db = db
        self.config = config
        self.presenter = presenter
        self.previews_everywhere = previews_everywhere
        self._clock = clock
        self._delivering: dict[str, asyncio.Event] = {}
        """Jobs whose grid is (being) posted while their files are written, until their row says so."""

    async def follow(self, ticket: JobTicket) -> None:
        """From submission to the shown outcome. A job the queue dropped at shutdown stays unfinished."""
        handle = ticket.handle
        async with handle.events() as events:
            card = await self._placed(ticket)
            # Previews are not safety-checked: where images are checked, they are shown only where a
            # flagged image could be (the same rule lets a job start from a flagged picture).
            previews = self.previews_everywhere or handle.request.allow_flagged_input
            try:
                outcome = await self._watch(card, events, previews=previews)
            except Exception as exc:  # a bug, or the database is gone: either way the owner is told
                await handle.cancel()  # in case it still runs: nobody would take its images
                await self._failed(card, exc)
                return
        if isinstance(outcome, JobFailed) and isinstance(outcome.error, JobInterrupted):
            # Kept unfinished, and not released: a remote worker's result waits for the next start.
            log.info("job %s interrupted by shutdown; it resumes on the next start", card.job_id)
            return
        try:
            if isinstance(outcome, JobFinished):
                await self._deliver(card, handle.request, outcome.result, outcome.attempt, ticket.notify)
            elif outcome.cancelled:
                await self._cancelled(card)
            elif isinstance(outcome.error, ImageFlagged):  # its picture was flagged: nothing was made
                await self._moderated(card, str(outcome.error), outcome.attempt, None, ticket.notify)
            elif isinstance(outcome.error, PromptRefused):
                await self._refused(card, outcome.error, outcome.attempt, ticket.notify)
            else:
                await self._failed(card, outcome.error, outcome.attempt)
        except StaleAttempt as exc:  # a newer run of the job counts, not this one
            log.info("job %s: %s", card.job_id, exc)
        except Exception as exc:  # e.g. the disk is full: the images could not be kept
            await self._failed(card, exc)
        await handle.release()

    async def _placed(self, ticket: JobTicket) -> JobCard:
        """The card with the message that shows the job: the submitter's, or one posted now."""
        message_id = await ticket.message_id()
        if message_id is None:
            message_id = await self.presenter.show_waiting(ticket.card)
        if message_id is None:
            return ticket.card
        await self._set_message(ticket.card.job_id, message_id)
        return replace(ticket.card, message_id=message_id)

    async def _watch(self, card: JobCard, events: EventStream, *, previews: bool) -> JobFinished | JobFailed:
        last_shown = float("-inf")
        async for event in events:
            if isinstance(event, JobStarted):
                await self._running(card.job_id, event.attempt)
            elif isinstance(event, JobRetried):
                await self._retried(card.job_id, event)
            elif isinstance(event, JobProgress):
                now = time.monotonic()
                # The stream keeps only the latest unread progress; what comes too soon is dropped.
                if now - last_shown >= self.presenter.progress_interval_s:
                    last_shown = now
                    progress = event.progress
                    if progress.preview is not None and not previews:
                        progress = replace(progress, preview=None)
                    await self.presenter.show_progress(card, progress)
            elif isinstance(event, JobFinished | JobFailed):
                return event
        raise AssertionError(f"the events of job {card.job_id} ended without an outcome")

    async def _deliver(
        self,
        card: JobCard,
        request: GenerationRequest,
        result: GenerationResult,
        attempt: int | None,
        notify: Notify | None,
    ) -> None:
        if result.any_flagged:
            shown = await self._flagged_images_get(card)
            if shown is FlaggedImages.BLOCK:  # never saved, never posted
                reason = withheld_reason(age_restricted=card.age_restricted)
                await self._moderated(card, reason, attempt, result.elapsed_s, notify)
                return
            card = replace(card, spoiler=shown is FlaggedImages.SPOILER)
        card = replace(card, image_size=result.images[0].size if result.images else None)
        delivered = self._delivering[card.job_id] = asyncio.Event()
        try:
            # 1. Only what the member waits for: the grid, encoded in the Discord format.
            images = await prepare_job_images(
                result,
                request,
                self.config.data_dir / "images" / card.job_id[:2],
                card.job_id,
                image_format=ImageFormat(self.config.discord_image_format),
                attachment_limit_bytes=self.config.attachment_limit_bytes,
            )
            # 2. The files are written meanwhile, on other threads; the post does not wait for them.
            writing = images.write()
            try:
                message_id = await self.presenter.show_result(card, images.saved)
            finally:
                await asyncio.wait([writing])
            saved = writing.result()
            # 3. Only now, with every file on disk, the row claims them (and the usage ledger counts).
            await self._succeeded(card, request, result, saved, attempt)
            if message_id is not None and message_id != card.message_id:
                await self._set_message(card.job_id, message_id)
        finally:
            delivered.set()
            del self._delivering[card.job_id]

    async def delivered(self, job_id: str, *, timeout_s: float = DELIVERY_WAIT_S) -> None:
        """Wait (at most `timeout_s`) until a job whose grid is posted has its files and its row: a button
        pressed on a grid that has just appeared then finds the image it starts from."""
        event = self._delivering.get(job_id)
        if event is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await event.wait()

    async def _succeeded(
        self,
        card: JobCard,
        request: GenerationRequest,
        result: GenerationResult,
        saved: SavedImages,
        attempt: int | None,
    ) -> None:
        async with self.db.session() as session:
            await q.mark_succeeded(
                session,
                card.job_id,
                images=self._image_records(saved, result),
                seeds=result.seeds,
                gpu_seconds=result.elapsed_s,
                model=result.model,
                grid_path=self._relative(saved.attachment),
                flagged=result.any_flagged,
                hosted=self.hosted(request),
                attempt=attempt,
                now=self._clock(),
            )
        log.info(
            "job %s succeeded in %.2fs on the device%s",
            card.job_id,
            result.elapsed_s,
            " (flagged; posted as the server's rule says)" if result.any_flagged else "",
        )

    async def _flagged_images_get(self, card: JobCard) -> FlaggedImages:
        """What the job's flagged images get: its server's rule as it stands now, in an age-restricted
        channel; withheld anywhere else."""
        async with self.db.session(read_only=True) as session:
            rules = await q.get_guild_rules(session, card.guild_id)
        return flagged_images_get(rules.flagged_images, age_restricted=card.age_restricted)

    def _image_records(self, saved: SavedImages, result: GenerationResult) -> list[q.ImageRecord]:
        records = [
            q.ImageRecord(index, image.width, image.height, self._relative(path), seed)
            for index, (path, image, seed) in enumerate(
                zip(saved.images, result.images, result.seeds, strict=True), start=1
            )
        ]
        if saved.grid is not None:
            grid = q.ImageRecord(0, result.width * 2, result.height * 2, self._relative(saved.grid))
            records.insert(0, grid)
        return records

    def _relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.config.data_dir))
        except ValueError:
            return str(path)

    # --- state changes and notices ----------------------------------------------------------

    async def _set_message(self, job_id: str, message_id: int) -> None:
        async with self.db.session() as session:
            await q.set_message_id(session, job_id, message_id)

    async def _running(self, job_id: str, attempt: int | None) -> None:
        try:
            async with self.db.session() as session:
                await q.mark_running(session, job_id, attempt=attempt, now=self._clock())
        except JobStateError as exc:  # news of an older run, or the start came twice: nothing to record
            log.info("job %s: start not recorded: %s", job_id, exc)
            return
        log.info("job %s running", job_id)

    async def _retried(self, job_id: str, event: JobRetried) -> None:
        async with self.db.session() as session:
            await q.requeue_job(session, job_id, attempt=event.attempt)
        log.warning("job %s runs again as run %d: %s", job_id, event.attempt, event.reason)

    async def _cancelled(self, card: JobCard) -> None:
        async with self.db.session() as session:
            await q.mark_cancelled(session, card.job_id, now=self._clock())
        log.info("job %s cancelled", card.job_id)
        await self.presenter.show_failure(card, "cancelled")

    async def _moderated(
        self,
        card: JobCard,
        reason: str,
        attempt: int | None,
        gpu_seconds: float | None,
        notify: Notify | None,
    ) -> None:
        """The safety check withheld the job (`gpu_seconds`: how long it ran; None: it never did)."""
        async with self.db.session() as session:
            await q.mark_moderated(
                session, card.job_id, reason, gpu_seconds=gpu_seconds, attempt=attempt, now=self._clock()
            )
        log.info("job %s moderated: %s", card.job_id, reason)
        await self.presenter.show_moderated(card, reason)
        if notify is not None:
            await notify(f"Your job `{card.job_id}` was withheld by this server's moderation. {reason}")

    async def _refused(
        self, card: JobCard, error: PromptRefused, attempt: int | None, notify: Notify | None
    ) -> None:
        """A hosted engine refused the prompt: the channel is told it was refused, the owner (privately,
        where the job came from an interaction) the engine's own reason."""
        if notify is None:
            await self._failed(card, error, attempt)
            return
        await self._failed(card, BotError(f"{error.engine} refused this prompt"), attempt)
        await notify(f"Your job `{card.job_id}` was refused by {error.engine}: {error.reason}")

    async def _failed(self, card: JobCard, error: Exception, attempt: int | None = None) -> None:
        reason = user_message(error)
        try:
            async with self.db.session() as session:
                await q.mark_failed(session, card.job_id, reason, attempt=attempt, now=self._clock())
        except JobStateError as exc:  # already ended (its images are saved; /show can redo the post)
            log.error("job %s: could not record or show its end (%s): %s", card.job_id, exc, reason)
            return
        log.info("job %s failed: %s", card.job_id, reason)
        await self.presenter.show_failure(card, reason)
