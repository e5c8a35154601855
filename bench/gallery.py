"""Benchmark: the web gallery over 100,000 jobs on SQLite and PostgreSQL, and the bot's event loop while
20 clients browse it during generation.

Run from the repository root:
    .venv/bin/python -m bench.gallery [--jobs 100000] [--db sqlite|postgres|both] [--requests 100]

The services come from `bot.services` (a temporary data dir; for PostgreSQL a throwaway database
`imaginebot_bench_gallery` on the `--postgres` server) with a simulated GPU of T = 0.3 s a job.
`--jobs` shown jobs, and 2.5 % more failed or flagged ones the gallery must skip, are inserted in bulk
(Core `insert()`, 5,000 jobs a transaction): three servers, 200 members, a year of dates, prompts from
a Zipf vocabulary (some words in a quarter of the prompts, a few in 0.02 %), eight aspect ratios, four
models, upscales and variations of earlier grids; each job with its image rows (pointing at a few real
PNGs: 1024² grids, 512² cells) and its usage row. The measured server's gallery is open to members
and served on the services' event loop, as `imaginebot run` serves it.

Prints, against the issue's targets:
- p50 / p95 / max latency of each page for a signed-in admin member, `--requests` times each in
  interleaved rounds, one request at a time (target p95 < 100 ms; the admin page is not in it);
- the event loop's lag (a 1 ms ticker, bench/_lag.py: p50 / p99 / max) while four members' jobs
  generate and `--clients` clients in another process browse (pages, searches, job pages, each with
  its thumbnails, six at a time and cached as a browser does), first with cold thumbnails (made on
  first use by the gallery's one thumbnail process), then warm (every thumbnail of the server already
  on disk); beside each, an idle loop's lag in a third process: what the machine alone costs a loop.
  Target: p99 < 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import re
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import make_url, select

from bench._gallery_data import (
    COMMON_WORD,
    MEASURED,
    NO_MATCH,
    RARE_WORD,
    VOCABULARY,
    Dataset,
    populate,
    user_id,
)
from bench._lag import LagMeter
from bench.job_sessions import DiscordLikePresenter
from bot.config import Config
from bot.health import freeze_startup_heap
from bot.jobs import JobCard, Requester
from bot.services import Services, open_services
from bot.store.models import Image, Job, JobStatus
from bot.web import serve_gallery
from bot.web._filters import Filters
from bot.web._thumbs import Size, _make
from engine.images import SavedImages
from engine.simulated import SimulatedBackend

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_DATABASE = "imaginebot_bench_gallery"
GENERATION_S = 0.3


# --- pages, one request at a time -------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    name: str
    paths: tuple[str, ...]
    """Asked in turn, round after round."""
    in_target: bool = True


@dataclass
class PageTimes:
    ms: list[float] = field(default_factory=list)
    cards: int = 0


def _cut(values: Sequence[float], q: float) -> float:
    ordered = sorted(values) or [0.0]
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def pages_to_measure(services: Services, dataset: Dataset, now: datetime) -> list[Page]:
    """The issue's pages: the gallery (first page, and a deep one), searches, the member's own page, a
    job's page, the admin page."""
    base = f"/g/{MEASURED}/"
    async with services.db.session(read_only=True) as session:  # half-way down the server's history
        at, job_id = (
            await session.execute(
                select(Job.created_at, Job.id)
                .where(Job.guild_id == MEASURED, Job.status == JobStatus.SUCCEEDED, Job.flagged.is_(False))
                .order_by(Job.created_at.desc(), Job.id.desc())
                .offset(dataset.server_jobs // 2)
                .limit(1)
            )
        ).one()
    deep = Filters().after(at, job_id).query_string()  # what a page's "Older" link carries
    families = list(dataset.families)[:25]
    since, until = (now - timedelta(days=150)).date(), (now - timedelta(days=90)).date()
    combo = Filters(aspect="16:9", model="stabilityai/sdxl-turbo", since=since, until=until).query_string()
    return [
        Page("gallery, first page", (base,)),
        Page(f"gallery, deep page ({dataset.server_jobs // 2:,} newer jobs)", (f"{base}?{deep}",)),
        Page(f"search, common word ({COMMON_WORD!r})", (f"{base}?q={COMMON_WORD}",)),
        Page(f"search, rare word ({RARE_WORD!r})", (f"{base}?q={RARE_WORD}",)),
        Page(f"search, no match ({NO_MATCH!r})", (f"{base}?q={NO_MATCH}",)),
        Page("search, 16:9 + model + 2 months", (f"{base}?{combo}",)),
        Page("member's own page (/me)", (f"{base}me",)),
        Page("job page (25 with a family tree)", tuple(f"{base}jobs/{job}" for job in families)),
        Page("admin page", (f"{base}admin",), in_target=False),
        # One of a page's 48 images (made in the unrecorded rounds): what a page view costs beyond its HTML.
        Page("a card's thumbnail, warm", (f"{base}jobs/{families[0]}/0-t.webp",), in_target=False),
    ]


async def measure_pages(
    http: aiohttp.ClientSession, base: str, pages: list[Page], requests: int
) -> dict[str, PageTimes]:
    """Each page `requests` times after 3 unrecorded rounds, the pages interleaved in each round."""
    times = {page.name: PageTimes() for page in pages}
    for round_ in range(-3, requests):
        for page in pages:
            began = time.perf_counter()
            async with http.get(base + page.paths[round_ % len(page.paths)]) as response:
                body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"{page.name}: HTTP {response.status}")
            if round_ >= 0:
                times[page.name].ms.append((time.perf_counter() - began) * 1000)
            times[page.name].cards = body.count(b'<li class="card">')
    return times


# --- browsing clients, in a process of their own -----------------------------------------------

_IMG = re.compile(r'<img src="([^"]+)"')
_JOB = re.compile(r'<a href="(/g/\d+/jobs/[0-9a-f]{32})">')
_OLDER = re.compile(r'<a rel="next" href="([^"]+)"')
_SEARCHES = [f"q={word}" for word in VOCABULARY[:40]] + ["ar=16:9", "ar=2:3&q=portrait", "model=tiny"]


@dataclass
class Browsing:
    pages_ms: list[float] = field(default_factory=list)
    thumbs_ms: list[float] = field(default_factory=list)
    errors: int = 0


async def _client(http: aiohttp.ClientSession, base: str, n: int, think: float, out: Browsing) -> None:
    """One member: older pages, searches, now and then a job's page; each page's images six at a time
    and kept, as a browser keeps them (the gallery lets it for a day); a pause of 0–2×`think` s."""
    rng, gallery = random.Random(n), f"/g/{MEASURED}/"
    older: str | None = None
    jobs: list[str] = []
    cached: set[str] = set()
    connections = asyncio.Semaphore(6)

    async def get(path: str, into: list[float]) -> bytes:
        began = time.perf_counter()
        async with http.get(base + path) as response:
            body = await response.read()
        out.errors += response.status != 200
        into.append((time.perf_counter() - began) * 1000)
        return body

    async def image(path: str) -> None:
        async with connections:
            await get(path, out.thumbs_ms)

    while True:
        roll = rng.random()
        if roll < 0.4 and older:
            path = older
        elif roll < 0.65 and jobs:
            path = rng.choice(jobs)
        elif roll < 0.85:
            path = f"{gallery}?{rng.choice(_SEARCHES)}"
        else:
            path = gallery
        page = (await get(path, out.pages_ms)).decode()
        if "/jobs/" not in path:
            jobs = _JOB.findall(page)
            more = _OLDER.search(page)
            older = more.group(1).replace("&amp;", "&") if more else None
        wanted = [src for src in _IMG.findall(page) if src not in cached]
        cached.update(wanted)
        await asyncio.gather(*(image(src) for src in wanted))
        await asyncio.sleep(rng.uniform(0, 2 * think))


async def browse(base: str, cookie: str, clients: int, seconds: float, think: float) -> Browsing:
    """`clients` members browsing for `seconds`, each on its own seeded walk (the same every run)."""
    out = Browsing()
    async with aiohttp.ClientSession(
        headers={"Cookie": cookie}, connector=aiohttp.TCPConnector(limit=0)
    ) as http:
        tasks = [asyncio.create_task(_client(http, base, n, think, out)) for n in range(clients)]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return out


# --- during generation -------------------------------------------------------------------------


class CountingPresenter(DiscordLikePresenter):
    """Answers as Discord would; counts the jobs that ended."""

    def __init__(self) -> None:
        super().__init__()
        self.ended = 0
        self.changed = asyncio.Event()

    async def show_result(self, card: JobCard, saved: SavedImages) -> int | None:
        self._end()
        return card.message_id

    async def show_failure(self, card: JobCard, reason: str) -> None:
        self._end()

    async def show_moderated(self, card: JobCard, reason: str) -> None:
        self._end()

    def _end(self) -> None:
        self.ended += 1
        self.changed.set()


async def generate(
    services: Services, presenter: CountingPresenter, stop: asyncio.Event, *, depth: int = 4
) -> None:
    """/imagine from four members of the measured server, `depth` jobs waiting or running at all times."""
    members = [
        Requester(user_id=user_id(k), guild_id=MEASURED, channel_id=MEASURED * 10, user_name=f"member{k:03d}")
        for k in range(4)
    ]
    messages, submitted, ended_before = itertools.count(10**9), 0, presenter.ended
    while not stop.is_set():
        if submitted - (presenter.ended - ended_before) < depth:
            who = members[submitted % len(members)]
            ticket = (await services.jobs.imagine(who, f"a lighthouse at dusk, take {submitted} --ar 16:9"))[
                0
            ]
            ticket.show_in(next(messages))
            submitted += 1
            continue
        presenter.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(presenter.changed.wait(), 0.5)


def _thumbnails(data_dir: Path) -> int:
    return sum(1 for _ in (data_dir / "thumbs").rglob("*.webp"))


async def warm_thumbnails(services: Services) -> int:
    """Every thumbnail the measured server's pages can ask for, on disk as if made before: each picture's
    made once, as the gallery makes it, and hard-linked under each job's name (making 300,000 of them one
    by one on the gallery's thread would take hours)."""
    async with services.db.session(read_only=True) as session:
        rows = (
            await session.execute(
                select(Image.job_id, Image.index, Image.path)
                .join(Job, Job.id == Image.job_id)
                .where(Job.guild_id == MEASURED, Job.status == JobStatus.SUCCEEDED, Job.flagged.is_(False))
            )
        ).all()
    return await asyncio.to_thread(_link_thumbnails, services.config.data_dir, rows)


def _link_thumbnails(data_dir: Path, rows: Sequence[Any]) -> int:
    made: dict[tuple[str, Size], Path] = {}
    grids = {job_id for job_id, index, _ in rows if index == 0}
    linked = 0
    for job_id, index, path in rows:
        # Cards and a job page's cells show the small size; its main picture (the grid, or an upscale's
        # one image) the large one. The names are those `bot.web._thumbs.Thumbnails.get` looks for.
        for size in (Size.CARD, Size.PAGE) if index == 0 or job_id not in grids else (Size.CARD,):
            target = data_dir / "thumbs" / job_id[:2] / f"{job_id}-{index}-{size.value}.webp"
            if target.exists():
                continue
            if (path, size) not in made:
                made[path, size] = _make(
                    data_dir / path, data_dir / "bench-thumbs" / f"{len(made)}.webp", size.side
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(made[path, size], target)
            linked += 1
    return linked


@dataclass(frozen=True)
class LoadRun:
    lag: LagMeter
    idle: str
    """An idle loop's lag in another process over the same seconds."""
    browsing: Browsing
    seconds: float
    jobs: int
    """Jobs that ended meanwhile (at most seconds / T)."""
    made: int
    """Thumbnails made meanwhile, or just after for requests made meanwhile."""
    connections: tuple[int, int]
    """The most database connections checked out of the pool at once, and the pool's limit."""


async def under_load(
    services: Services, presenter: CountingPresenter, base: str, cookie: str, args: argparse.Namespace
) -> LoadRun:
    """The clients browse for `--seconds` while jobs generate; the event loop's lag meanwhile."""
    data_dir = services.config.data_dir
    before = await asyncio.to_thread(_thumbnails, data_dir)
    stop = asyncio.Event()
    generating = asyncio.create_task(generate(services, presenter, stop))
    idle = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench._lag", str(args.seconds), stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    clients = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bench.gallery", "--browse", base, "--cookie", cookie),
        *("--clients", str(args.clients), "--seconds", str(args.seconds), "--think", str(args.think)),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    ended = presenter.ended
    pool = services.db.engine.sync_engine.pool
    busiest = 0

    async def watch_pool() -> None:
        nonlocal busiest
        while True:
            busiest = max(busiest, pool.checkedout())  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)

    with LagMeter() as lag:
        began, watching = time.perf_counter(), asyncio.create_task(watch_pool())
        output = (await clients.communicate())[0]
        seconds = time.perf_counter() - began
        watching.cancel()
    jobs = presenter.ended - ended
    limit = pool.size() + pool._max_overflow  # type: ignore[attr-defined]
    stop.set()
    await generating
    await services.jobs.wait_idle()
    idle_lag = (await idle.communicate())[0].decode().strip()
    # Thumbnails asked for at the end are still being made: let the thread finish them, so that the
    # next run starts from what this one left.
    made, settled = await asyncio.to_thread(_thumbnails, data_dir), False
    while not settled:
        await asyncio.sleep(1.0)
        now = await asyncio.to_thread(_thumbnails, data_dir)
        made, settled = now, now == made
    found = json.loads(output.decode().splitlines()[-1])
    return LoadRun(lag, idle_lag, Browsing(**found), seconds, jobs, made - before, (busiest, limit))


# --- one database, then the report ---------------------------------------------------------------


@dataclass
class Result:
    database: str
    dataset: Dataset
    insert_s: float
    pages: list[Page]
    times: dict[str, PageTimes]
    cold: LoadRun
    warm: LoadRun
    linked: int


@contextlib.asynccontextmanager
async def postgres_database(server: str) -> AsyncIterator[str]:
    """A fresh database on the PostgreSQL server `server`, dropped afterwards."""
    import asyncpg  # type: ignore[import-untyped]

    admin = make_url(server).set(drivername="postgresql")
    connection = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        await connection.execute(f"DROP DATABASE IF EXISTS {POSTGRES_DATABASE} WITH (FORCE)")
        await connection.execute(f"CREATE DATABASE {POSTGRES_DATABASE}")
        url = admin.set(drivername="postgresql+asyncpg", database=POSTGRES_DATABASE)
        yield url.render_as_string(hide_password=False)
    finally:
        await connection.execute(f"DROP DATABASE IF EXISTS {POSTGRES_DATABASE} WITH (FORCE)")
        await connection.close()


async def sign_in(base: str, services: Services, member: int) -> tuple[aiohttp.ClientSession, str]:
    """A client signed in through a `/gallery` link, as the member's browser is; and its cookie."""
    token = services.gallery_keys.link_token(
        guild_id=MEASURED, user_id=member, name="member012", admin=True, now=time.time(), ttl_s=600
    )
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP address
    http = aiohttp.ClientSession(cookie_jar=jar)
    async with http.get(f"{base}/login?t={token}") as response:
        if response.url.path != f"/g/{MEASURED}/" or response.status != 200:
            raise RuntimeError(f"signing in ended at {response.url} with HTTP {response.status}")
    return http, "; ".join(f"{c.key}={c.value}" for c in jar)


async def run_one(name: str, url: str | None, args: argparse.Namespace) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(
            _env_file=None,
            data_dir=Path(tmp),
            database_url_setting=url,
            model="simulated",
            web_port=free_port(),
        )
        backend = SimulatedBackend(seconds=GENERATION_S, steps=4)
        async with open_services(config, backend=backend) as services:
            now, began = datetime.now(UTC), time.perf_counter()
            dataset = await populate(services, args.jobs, now - timedelta(minutes=5))
            insert_s = time.perf_counter() - began
            print(
                f"{name}: {dataset.shown + dataset.hidden} jobs, {dataset.images} images in {insert_s:.1f} s",
                flush=True,
            )
            pages = await pages_to_measure(services, dataset, now)
            async with serve_gallery(services, guild_name=lambda _: "Bench Server") as gallery:
                freeze_startup_heap()  # as `imaginebot run` does once it is up
                http, cookie = await sign_in(gallery.url, services, dataset.member)
                async with http:
                    times = await measure_pages(http, gallery.url, pages, args.requests)
                presenter = CountingPresenter()
                await services.jobs.start(presenter, recover=False)
                print(f"{name}: pages measured; browsing with cold thumbnails", flush=True)
                cold = await under_load(services, presenter, gallery.url, cookie, args)
                linked = await warm_thumbnails(services)
                print(f"{name}: {linked} more thumbnails on disk; browsing again", flush=True)
                warm = await under_load(services, presenter, gallery.url, cookie, args)
    return Result(name, dataset, insert_s, pages, times, cold, warm, linked)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _load_line(run: LoadRun) -> str:
    lags, b = run.lag.lags_ms, run.browsing
    return (
        f"loop lag p50 {_cut(lags, 0.5):.1f}, p99 {_cut(lags, 0.99):.1f}, max {max(lags):.1f} ms "
        f"({len(lags)} ticks); idle loop meanwhile: {run.idle}\n"
        f"      {run.seconds:.0f} s: {len(b.pages_ms)} pages p50 {_cut(b.pages_ms, 0.5):.0f} / p95 "
        f"{_cut(b.pages_ms, 0.95):.0f} ms; {len(b.thumbs_ms)} thumbnails p50 {_cut(b.thumbs_ms, 0.5):.0f} / "
        f"p95 {_cut(b.thumbs_ms, 0.95):.0f} ms, {run.made} made; {run.jobs} jobs generated "
        f"({run.jobs * GENERATION_S / run.seconds:.2f} of the device's rate); database connections in use "
        f"at most {run.connections[0]} of {run.connections[1]}; {b.errors} errors"
    )


def report(results: list[Result], args: argparse.Namespace) -> None:
    d = results[0].dataset
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    python = platform.python_version()
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {python}, load average {load}")
    words = ", ".join(f"{word!r} in {d.word_jobs[word]:,}" for word in (COMMON_WORD, RARE_WORD, NO_MATCH))
    print(
        f"data: {d.shown:,} shown jobs (+{d.hidden:,} failed or flagged), {d.images:,} images; the measured "
        f"server {d.server_jobs:,} shown jobs, of them the member's own {d.member_jobs}; {words}"
    )
    print(f"pages, {args.requests} requests each, one at a time; ms p50 / p95 / max (target p95 < 100 ms):")
    print("| page | cards | " + " | ".join(r.database for r in results) + " |")
    print("| --- | --- |" + " --- |" * len(results))
    missed = []
    for page in results[0].pages:
        cells = []
        for r in results:
            ms = r.times[page.name].ms
            over = page.in_target and _cut(ms, 0.95) >= 100
            missed += [f"{r.database} {page.name}"] * over
            cells.append(f"{_cut(ms, 0.5):.1f} / {_cut(ms, 0.95):.1f} / {max(ms):.1f}" + " ✗" * over)
        name = page.name + ("" if page.in_target else " (not in the target)")
        print(f"| {name} | {results[0].times[page.name].cards} | " + " | ".join(cells) + " |")
    pauses = f"pauses 0–{2 * args.think:g} s"
    print(f"{args.clients} clients browsing ({pauses}) while jobs generate (T = {GENERATION_S} s):")
    for r in results:
        print(f"  {r.database}, thumbnails cold: {_load_line(r.cold)}")
        print(f"  {r.database}, thumbnails warm ({r.linked:,} linked first): {_load_line(r.warm)}")
    print("inserting: " + ", ".join(f"{r.database} {r.insert_s:.1f} s" for r in results))
    print(f"page target (p95 < 100 ms): {'met' if not missed else 'missed: ' + '; '.join(missed)}")
    lags = [
        (f"{r.database} {k}", _cut(run.lag.lags_ms, 0.99))
        for r in results
        for k, run in (("cold", r.cold), ("warm", r.warm))
    ]
    verdict = "met" if all(lag < 20 for _, lag in lags) else "missed"
    print(f"loop lag target (p99 < 20 ms): {verdict}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in lags))


async def main(args: argparse.Namespace) -> None:
    results = []
    if args.db in ("sqlite", "both"):
        results.append(await run_one("SQLite", None, args))
    if args.db in ("postgres", "both"):
        async with postgres_database(args.postgres) as url:
            results.append(await run_one("PostgreSQL", url, args))
    report(results, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="shown jobs to insert")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("IMAGINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help=f"a PostgreSQL server (any database on it); {POSTGRES_DATABASE} is made there and dropped",
    )
    parser.add_argument("--requests", type=int, default=100, help="requests per page")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0, help="browsing time, cold and warm each")
    parser.add_argument("--think", type=float, default=1.0, help="a client's mean pause between pages (s)")
    parser.add_argument("--browse", help=argparse.SUPPRESS)  # the clients' process: the gallery's URL
    parser.add_argument("--cookie", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.browse:
        found = asyncio.run(
            browse(arguments.browse, arguments.cookie, arguments.clients, arguments.seconds, arguments.think)
        )
        print(json.dumps({"pages_ms": found.pages_ms, "thumbs_ms": found.thumbs_ms, "errors": found.errors}))
    else:
        asyncio.run(main(arguments))
