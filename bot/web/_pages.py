"""The gallery's pages: a server's gallery and search, a member's own jobs, one job with its family tree,
its images by job and cell, and the admin page. Every handler first decides who is looking and what
they may see (`bot.web._access`); anything they may not see is a 404, as if it did not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from bot.jobs import JobCard
from bot.policy import GalleryAccess, Limits, QuotaScope, day_window, resolve_limits
from bot.store import Database, Job, JobKind, JobStatus, utcnow
from bot.store import Image as StoredImage
from bot.store import queries as q
from bot.store.queries import DayUsage, MemberUsage
from bot.web._access import SESSION_TTL_S, AccessDenied, GalleryKeys, Pass, may_see, may_see_server
from bot.web._charts import Bar, columns_chart, rows_chart
from bot.web._filters import Filters
from bot.web._thumbs import Size, Thumbnails
from engine.images import read_recipe

__all__ = ["PAGE_SIZE", "Pages"]

log = logging.getLogger("bot.web")

PAGE_SIZE: Final = 48
GALLERY_SESSIONS: Final = 4
"""At most this many of the gallery's database sessions at once, whatever the number of visitors: the
pool's other connections stay free for the job service, so browsing never holds up generation
(bench/gallery.py: with 20 clients browsing and no cap, generation on SQLite fell to 0.3 of its rate)."""
ADMIN_DAYS: Final = 30
_MAX_ID = 2**63 - 1
_GRID = 0
_COOKIE = "imaginebot_{guild}"


@dataclass(frozen=True, slots=True)
class Measure:
    """One quantity the admin page plots, per day and per member against its daily quota."""

    title: str
    unit: str
    per_day: Callable[[DayUsage], float]
    busiest: Callable[[MemberUsage], float]
    quota: Callable[[Limits], float | None]
    hosted_only: bool = False
    """Plotted only when a hosted engine made images in the period."""


_MEASURES: Final = (
    Measure("Jobs", "jobs", lambda d: d.jobs, lambda m: m.busiest_jobs, lambda q: q.jobs_per_day),
    Measure(
        "GPU minutes",
        "GPU minutes",
        lambda d: d.gpu_seconds / 60,
        lambda m: m.busiest_gpu_seconds / 60,
        lambda q: q.gpu_minutes_per_day,
    ),
    Measure(
        "Hosted-engine images",
        "images",
        lambda d: d.hosted_images,
        lambda m: m.busiest_hosted_images,
        lambda q: q.images_per_day,
        hosted_only=True,
    ),
)


@dataclass(frozen=True, slots=True)
class Node:
    """One job of a family tree as the page shows it."""

    job: Job | None
    """None: not linked (another member's private job, or one that did not succeed)."""
    label: str
    note: str | None = None
    """Why it is not linked: `private`, `failed`, `running`, …"""
    children: list[Node] = field(default_factory=list)


class Pages:
    """The handlers, over the bot's database and data dir."""

    def __init__(
        self,
        *,
        config: Config,
        db: Database,
        keys: GalleryKeys,
        thumbnails: Thumbnails,
        guild_name: Callable[[int], str | None] = lambda _: None,
        models: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.db = db
        self.keys = keys
        self.thumbnails = thumbnails
        self.guild_name = guild_name
        self.models = models
        self.data_dir = config.data_dir.resolve()
        self._sessions = asyncio.Semaphore(GALLERY_SESSIONS)
        self.templates = Environment(
            loader=PackageLoader("bot.web", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        for name in self.templates.list_templates(extensions=["html"]):
            self.templates.get_template(name)  # compiled now, not on the loop when a first visitor asks

    # --- who is looking -------------------------------------------------------------------

    def _guild(self, request: web.Request) -> int:
        guild = int(request.match_info["guild"])
        if not 0 < guild <= _MAX_ID:
            raise web.HTTPNotFound()
        return guild

    def _viewer(self, request: web.Request, guild: int) -> Pass | None:
        cookie = request.cookies.get(_COOKIE.format(guild=guild))
        if cookie is None:
            return None
        try:
            return self.keys.open_session(cookie, guild_id=guild, now=time.time())
        except AccessDenied as exc:
            refused(request, str(exc))
            return None

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncSession]:
        """A read-only session, once one of the gallery's `GALLERY_SESSIONS` is free."""
        async with self._sessions, self.db.session(read_only=True) as session:
            yield session

    async def _access(self, guild: int) -> GalleryAccess:
        async with self._read() as session:
            return (await q.get_guild_rules(session, guild)).gallery

    # --- pages ----------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        return self.render(request, "index.html", status=200)

    async def login(self, request: web.Request) -> web.Response:
        """Open a `/gallery` link: a session cookie for its server, then that server's gallery."""
        try:
            session, cookie = self.keys.open_link(request.query.get("t", ""), now=time.time())
        except AccessDenied as exc:
            refused(request, str(exc))
            return self.render(request, "denied.html", status=403, reason="link")
        log.info("gallery: member %s opened the gallery of server %s", session.user_id, session.guild_id)
        response = web.HTTPSeeOther(f"/g/{session.guild_id}/")
        response.set_cookie(
            _COOKIE.format(guild=session.guild_id),
            cookie,
            max_age=int(SESSION_TTL_S),
            path=f"/g/{session.guild_id}",
            httponly=True,
            samesite="Lax",
            secure=self.config.gallery_url.startswith("https://"),
        )
        raise response

    async def gallery(self, request: web.Request) -> web.Response:
        """The server's jobs (or only the visitor's own, when that is all they may see), searched."""
        guild = self._guild(request)
        viewer = self._viewer(request, guild)
        access = await self._access(guild)
        mine = request.match_info.get("mine") == "me"
        if (mine and viewer is None) or (not mine and viewer is None and not may_see_server(None, access)):
            refused(request, "not signed in")
            return self.render(request, "denied.html", status=403, reason="session", guild=guild)
        everyone = not mine and may_see_server(viewer, access)
        filters = Filters.parse(request.query)
        query = filters.query(guild, owner_only=None if everyone else viewer.user_id if viewer else None)
        async with self._read() as session:
            jobs = await q.gallery_jobs(session, query, limit=PAGE_SIZE + 1)
            member_name = None
            if filters.member is not None:
                member_name = (await q.member_names(session, guild, [filters.member])).get(filters.member)
        more = len(jobs) > PAGE_SIZE
        jobs = jobs[:PAGE_SIZE]
        older = filters.after(jobs[-1].created_at, jobs[-1].id).query_string() if more else None
        return self.render(
            request,
            "gallery.html",
            guild=guild,
            viewer=viewer,
            mine=mine,
            everyone=everyone,
            access=access,
            filters=filters,
            member_name=member_name,
            cards=[self._card(job) for job in jobs],
            older=older,
            aspects=("1:1", "3:2", "2:3", "4:3", "3:4", "16:9", "9:16", "21:9"),
            models=self.models,
        )

    async def job(self, request: web.Request) -> web.Response:
        """One job: its images, recipe, downloads and family tree."""
        guild = self._guild(request)
        viewer = self._viewer(request, guild)
        job, access = await self._visible_job(request, guild, viewer)
        async with self._read() as session:
            root, family = await q.family_of(session, job)
        main = _image(job, _GRID) or _image(job, 1)
        recipe = None
        if main is not None and (path := self._file(main.path)) is not None:
            recipe = await asyncio.to_thread(_recipe_of, path)
        return self.render(
            request,
            "job.html",
            guild=guild,
            viewer=viewer,
            job=job,
            label=_label(job, None),
            main=main,
            cells=[image for image in job.images if image.index != _GRID] if _image(job, _GRID) else [],
            recipe=recipe,
            tree=_tree(root, family, lambda other: may_see(viewer, other.user_id, access)),
        )

    async def image(self, request: web.Request) -> web.StreamResponse:
        """A job's stored PNG (grid 0, cells 1–4), or its WebP thumbnail."""
        guild = self._guild(request)
        viewer = self._viewer(request, guild)
        job_id, index = request.match_info["job"], int(request.match_info["index"])
        async with self._read() as session:
            image = await q.gallery_image(session, guild, job_id, index)
        if image is None or not may_see(viewer, image.owner_id, image.access):
            refused(request, f"job {job_id} is not visible to {viewer.user_id if viewer else 'a visitor'}")
            raise web.HTTPNotFound()
        path = self._file(image.path)
        if path is None:
            raise web.HTTPNotFound()
        size = request.match_info.get("size")
        if size is None:
            return web.FileResponse(
                path,
                headers={
                    "Content-Type": "image/png",
                    "Content-Disposition": f'inline; filename="imaginebot-{job_id[:8]}-{index}.png"',
                    "Cache-Control": "private, max-age=86400",
                },
            )
        thumb = await self.thumbnails.get(path, f"{job_id}-{index}", Size(size))
        return web.FileResponse(
            thumb, headers={"Content-Type": "image/webp", "Cache-Control": "private, max-age=86400"}
        )

    async def admin(self, request: web.Request) -> web.Response:
        """Jobs, GPU minutes and hosted images per day and per member, against the server's quotas."""
        guild = self._guild(request)
        viewer = self._viewer(request, guild)
        if viewer is None or not viewer.admin:
            refused(request, "admin page for a non-admin" if viewer else "not signed in")
            return self.render(request, "denied.html", status=403, reason="admin", guild=guild)
        since, _ = day_window(utcnow() - timedelta(days=ADMIN_DAYS - 1))
        async with self._read() as session:
            days = await q.usage_by_day(session, guild, since)
            members = (await q.usage_by_member(session, guild, since))[:25]
            rules = await q.quota_rules(session, guild)
            people = [m.user_id for m in members]
            people += [r.target_id for r in rules if r.scope is QuotaScope.USER and r.target_id is not None]
            names = await q.member_names(session, guild, people)
        by_day = {day.day: day for day in days}
        calendar = [(since + timedelta(days=i)).date() for i in range(ADMIN_DAYS)]
        limits = {
            m.user_id: resolve_limits(
                rules,  # no roles: the web does not know a member's; role rules are listed below the charts
                user_id=m.user_id,
                default_max_waiting=self.config.max_waiting_per_owner,
                default_max_running=self.config.max_running_per_owner,
            )
            for m in members
        }

        def who(user_id: int) -> str:
            return names.get(user_id) or f"member {user_id}"

        charts, member_charts = [], []
        hosted = any(day.hosted_images for day in days)
        zero = DayUsage(since.date(), 0, 0.0, 0, 0)  # a day with no jobs
        for measure in _MEASURES:
            if measure.hosted_only and not hosted:
                continue
            charts.append(
                columns_chart(
                    f"{measure.title} per day",
                    [Bar(d.isoformat(), measure.per_day(by_day.get(d, zero))) for d in calendar],
                    unit=measure.unit,
                )
            )
            member_charts.append(
                rows_chart(
                    f"{measure.title} on each member's busiest day",
                    [
                        Bar(who(m.user_id), measure.busiest(m), measure.quota(limits[m.user_id]))
                        for m in members
                    ],
                    unit=measure.unit,
                )
            )
        return self.render(
            request,
            "admin.html",
            guild=guild,
            viewer=viewer,
            charts=charts,
            member_charts=member_charts,
            members=[(m, who(m.user_id)) for m in members],
            rules=[
                (rule, who(rule.target_id) if rule.scope is QuotaScope.USER and rule.target_id else None)
                for rule in rules
            ],
            days=ADMIN_DAYS,
        )

    # --- helpers --------------------------------------------------------------------------

    async def _visible_job(
        self, request: web.Request, guild: int, viewer: Pass | None
    ) -> tuple[Job, GalleryAccess]:
        job_id = request.match_info["job"]
        async with self._read() as session:
            job = await q.gallery_job(session, guild, job_id)
            access = (await q.get_guild_rules(session, guild)).gallery
        if job is None or not may_see(viewer, job.user_id, access):
            refused(request, f"job {job_id} is not visible to {viewer.user_id if viewer else 'a visitor'}")
            raise web.HTTPNotFound()
        return job, access

    def _file(self, relative: str) -> Path | None:
        """A stored image's file, only if it lies inside the data dir and exists."""
        path = (self.data_dir / relative).resolve()
        if not path.is_relative_to(self.data_dir) or not path.is_file():
            return None
        return path

    def _card(self, job: Job) -> dict[str, Any]:
        image = _image(job, _GRID) or _image(job, 1)
        width, height = (image.width, image.height) if image is not None else (1, 1)
        scale = Size.CARD.side / max(width, height)
        return {
            "job": job,
            "label": _label(job, None),
            "index": image.index if image is not None else None,
            "width": max(1, round(width * scale)),
            "height": max(1, round(height * scale)),
        }

    def render(
        self, request: web.Request, template: str, *, status: int = 200, **context: Any
    ) -> web.Response:
        context.setdefault("guild", None)
        context.setdefault("viewer", None)
        guild = context["guild"]
        page = self.templates.get_template(template).render(
            server_name=self.guild_name(guild) if guild else None, path=request.path, **context
        )
        return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")


def refused(request: web.Request, reason: str) -> None:
    """Log a refusal: who asked for what (the path, never the query string: it may carry a link)."""
    log.warning("gallery: refused %s %s from %s: %s", request.method, request.path, request.remote, reason)


def _image(job: Job, index: int) -> StoredImage | None:
    return next((image for image in job.images if image.index == index), None)


def _shown(job: Job) -> bool:
    return job.status is JobStatus.SUCCEEDED and not job.flagged


def _recipe_of(path: Path) -> str | None:
    try:
        return read_recipe(path)
    except OSError:
        return None


def _label(job: Job, parent: Job | None) -> str:
    """What a job is, as a Midjourney member names it: `/imagine`, `U2`, `V3`, `Zoom Out`, …"""
    card = JobCard.from_job(job)
    if job.kind is JobKind.IMAGINE:
        return "/imagine"
    if job.kind is JobKind.REROLL:
        return "🔄 Re-roll"
    if job.kind is JobKind.UPSCALE and not card.upscale:
        return f"U{job.parent_index}"
    if job.kind is JobKind.VARIATION and (parent is None or parent.kind is not JobKind.UPSCALE):
        return f"V{job.parent_index}" if parent is not None else card.what or "Variations"
    return card.what or job.kind.value


def _tree(root: Job, family: list[Job], visible: Callable[[Job], bool]) -> Node:
    """The family as nested nodes from the root; jobs the visitor may not see keep their place,
    unnamed, so what was made from them still hangs where it belongs."""
    by_id = {job.id: job for job in [root, *family]}
    nodes: dict[str, Node] = {}
    for job in [root, *family]:
        parent = by_id.get(job.parent_id) if job.parent_id else None
        if not visible(job):
            nodes[job.id] = Node(None, "another member's job", "private")
        elif not _shown(job):
            note = "withheld" if job.status is JobStatus.MODERATED or job.flagged else job.status.value
            nodes[job.id] = Node(None, _label(job, parent), note)
        else:
            nodes[job.id] = Node(job, _label(job, parent))
    for job in family:
        if job.parent_id in nodes:
            nodes[job.parent_id].children.append(nodes[job.id])
    return nodes[root.id]
