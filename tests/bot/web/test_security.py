"""Who may see what, and what nobody may reach: signed links and sessions, other members' and other
servers' jobs, moderated images, path tricks, the admin page; every refusal logged; security headers.

The jobs here are written through the store's own API (as the job service writes them), and the
gallery is the real application served on a loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from PIL import Image
from sqlalchemy import event

from bot.policy import GalleryAccess, QuotaScope
from bot.services import Services, open_services
from bot.store import JobKind
from bot.store import queries as q
from bot.web import SECURITY_HEADERS, GalleryKeys, serve_gallery
from bot.web._pages import GALLERY_SESSIONS
from engine.simulated import SimulatedBackend
from tests.bot.discord_fixtures import make_config

SERVER, OTHER_SERVER = 1001, 2002
ALICE, BOB, ADMIN = 11, 22, 33


@dataclass
class Site:
    services: Services
    base: str
    data_dir: Path

    @property
    def keys(self) -> GalleryKeys:
        return self.services.gallery_keys

    def link(self, user: int, *, guild: int = SERVER, admin: bool = False, ttl_s: float = 60) -> str:
        token = self.keys.link_token(
            guild_id=guild, user_id=user, name=f"user{user}", admin=admin, now=time.time(), ttl_s=ttl_s
        )
        return f"{self.base}/login?t={token}"

    async def job(self, user: int, prompt: str, *, guild: int = SERVER, flagged: bool = False) -> str:
        """A finished grid of `user`'s with real PNG files, written as the job service writes them."""
        async with self.services.db.session() as session:
            job = await q.create_job(
                session,
                kind=JobKind.IMAGINE,
                user_id=user,
                user_name=f"user{user}",
                guild_id=guild,
                channel_id=5,
                prompt=prompt,
                seed=1,
                params={"request": {"aspect_ratio": [1, 1]}},
            )
            records = []
            for index in range(5):
                relative = f"images/{job.id}{'' if index == 0 else f'-{index}'}.png"
                size = 128 if index == 0 else 64
                Image.new("RGB", (size, size), (40 * index, 90, 200)).save(self.data_dir / relative)
                records.append(q.ImageRecord(index=index, width=size, height=size, path=relative, seed=index))
            await q.mark_succeeded(
                session, job.id, images=records, seeds=[1, 2, 3, 4], gpu_seconds=1.5, flagged=flagged
            )
            return job.id

    async def rule(self, access: GalleryAccess, guild: int = SERVER) -> None:
        async with self.services.db.session() as session:
            await q.update_guild_rules(session, guild, gallery=access)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    config = make_config(tmp_path, web_secret="a-test-secret-of-enough-length")
    (tmp_path / "images").mkdir(parents=True)
    async with (
        open_services(config, backend=SimulatedBackend()) as services,
        serve_gallery(services, port=0) as gallery,
    ):
        yield Site(services, gallery.url, tmp_path)


@contextlib.asynccontextmanager
async def browser(
    site: Site, user: int | None = None, **link: object
) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client signed in as `user` (through a link, as a member is), or a visitor when None."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        if user is not None:
            async with http.get(site.link(user, **link)) as response:  # type: ignore[arg-type]
                assert response.status == 200, await response.text()
        yield http


async def status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url, allow_redirects=False) as response:
        await response.read()
        return response.status


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bot.web" and r.levelno == logging.WARNING]


async def test_a_link_opens_a_session_cookie_for_its_server_only(site: Site) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(site.link(ALICE), allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"] == f"/g/{SERVER}/"
            cookie = response.cookies[f"imaginebot_{SERVER}"]
            assert cookie["httponly"] is True
            assert cookie["path"] == f"/g/{SERVER}"
            assert cookie["samesite"] == "Lax"
            assert int(cookie["max-age"]) == 24 * 3600
        assert await status(http, f"{site.base}/g/{SERVER}/me") == 200
        # The same member's session is worth nothing on another server.
        assert await status(http, f"{site.base}/g/{OTHER_SERVER}/me") == 403


async def test_expired_or_tampered_links_are_refused_and_logged(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.web")
    expired = site.keys.link_token(
        guild_id=SERVER, user_id=ALICE, name="a", admin=True, now=time.time() - 3600, ttl_s=60
    )
    good = site.link(ALICE).split("t=", 1)[1]
    body, mac = good.split(".")
    forged_body = site.link(BOB, admin=True).split("t=", 1)[1].split(".")[0]  # Bob's pass, Alice's signature
    other_secret = GalleryKeys(b"another-secret-entirely").link_token(
        guild_id=SERVER, user_id=ALICE, name="a", admin=True, now=time.time(), ttl_s=60
    )
    async with aiohttp.ClientSession() as http:
        for token in (
            expired,
            f"{forged_body}.{mac}",
            f"{body}.{mac[:-2]}AA",
            other_secret,
            "",
            "x.y",
            ".....",
        ):
            async with http.get(f"{site.base}/login", params={"t": token}, allow_redirects=False) as response:
                assert response.status == 403, token
                assert "Set-Cookie" not in response.headers
                assert "/gallery" in await response.text()
    logged = refusals(caplog)
    assert any("expired link" in line for line in logged)
    assert any("bad signature" in line for line in logged)
    assert all("t=" not in line for line in logged), "a link's pass must never reach the log"


async def test_a_session_cookie_is_not_a_link_and_a_link_is_not_a_cookie(site: Site) -> None:
    token = site.link(ALICE).split("t=", 1)[1]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        http.cookie_jar.update_cookies({f"imaginebot_{SERVER}": token})  # a link's pass used as a session
        assert await status(http, f"{site.base}/g/{SERVER}/me") == 403
    session, cookie = site.keys.open_link(token, now=time.time())
    async with (
        aiohttp.ClientSession() as http,  # and a session cookie used as a link
        http.get(f"{site.base}/login", params={"t": cookie}, allow_redirects=False) as response,
    ):
        assert response.status == 403
    assert session.user_id == ALICE


async def test_members_see_only_their_own_jobs_until_the_server_opens_its_gallery(site: Site) -> None:
    alices = await site.job(ALICE, "alice's secret lighthouse")
    bobs = await site.job(BOB, "bob's harbour")
    job_urls = [
        f"/g/{SERVER}/jobs/{alices}",
        f"/g/{SERVER}/jobs/{alices}/0.png",
        f"/g/{SERVER}/jobs/{alices}/1-t.webp",
    ]
    async with browser(site, BOB) as bob, browser(site) as visitor:
        page = await (await bob.get(f"{site.base}/g/{SERVER}/")).text()
        assert "bob&#39;s harbour" in page
        assert "lighthouse" not in page
        for url in job_urls:
            assert await status(bob, site.base + url) == 404
            assert await status(visitor, site.base + url) == 404
        assert await status(visitor, f"{site.base}/g/{SERVER}/") == 403
        # A search cannot reach what the listing hides.
        assert alices not in await (await bob.get(f"{site.base}/g/{SERVER}/?q=lighthouse")).text()

        await site.rule(GalleryAccess.MEMBERS)
        assert "lighthouse" in await (await bob.get(f"{site.base}/g/{SERVER}/")).text()
        for url in job_urls:
            assert await status(bob, site.base + url) == 200
            assert await status(visitor, site.base + url) == 404  # members only: a visitor still sees nothing
        assert await status(visitor, f"{site.base}/g/{SERVER}/") == 403

        await site.rule(GalleryAccess.PUBLIC)
        assert "lighthouse" in await (await visitor.get(f"{site.base}/g/{SERVER}/")).text()
        for url in job_urls:
            assert await status(visitor, site.base + url) == 200
        assert await status(visitor, f"{site.base}/g/{SERVER}/me") == 403  # no "own jobs" without a session
        assert await status(bob, f"{site.base}/g/{SERVER}/jobs/{bobs}") == 200


async def test_another_servers_jobs_are_never_reachable(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.web")
    elsewhere = await site.job(ALICE, "a job on the other server", guild=OTHER_SERVER)
    await site.rule(GalleryAccess.PUBLIC, guild=SERVER)
    async with browser(site, ALICE) as alice:  # her own job, but asked for through this server's pages
        for suffix in ("", "/0.png", "/2-m.webp"):
            assert await status(alice, f"{site.base}/g/{SERVER}/jobs/{elsewhere}{suffix}") == 404
        page = await (await alice.get(f"{site.base}/g/{SERVER}/")).text()
        assert "other server" not in page
    assert any(elsewhere in line and "not visible" in line for line in refusals(caplog))


async def test_flagged_and_moderated_images_never_appear_even_to_their_owner(site: Site) -> None:
    flagged = await site.job(ALICE, "a flagged picture", flagged=True)
    async with site.services.db.session() as session:
        moderated = await q.create_job(
            session,
            kind=JobKind.IMAGINE,
            user_id=ALICE,
            guild_id=SERVER,
            channel_id=5,
            prompt="withheld",
            seed=1,
        )
        await q.mark_moderated(session, moderated.id, "flagged", gpu_seconds=1.0)
    await site.rule(GalleryAccess.PUBLIC)
    async with browser(site, ALICE) as alice:
        for path in ("/", "/me", "/?q=flagged", "/?q=withheld"):
            page = await (await alice.get(f"{site.base}/g/{SERVER}{path}")).text()
            assert flagged not in page
            assert moderated.id not in page
            assert "No images yet" in page or "Nothing matches" in page
        for job_id in (flagged, moderated.id):
            assert await status(alice, f"{site.base}/g/{SERVER}/jobs/{job_id}") == 404
            assert await status(alice, f"{site.base}/g/{SERVER}/jobs/{job_id}/0.png") == 404


@pytest.mark.parametrize(
    "path",
    [
        "/g/{server}/jobs/..%2F..%2F..%2Fetc%2Fpasswd",
        "/g/{server}/jobs/../../etc/passwd",
        "/g/{server}/jobs/{job_upper}",
        "/g/{server}/jobs/{job}/5.png",
        "/g/{server}/jobs/{job}/0.png%00.webp",
        "/g/{server}/jobs/{job}/0-x.webp",
        "/g/{server}/jobs/{job}/..%2F..%2Fimaginebot.db",
        "/g/99999999999999999999/",
        "/g/-1/",
        "/static/..%2F_pages.py",
        "/static/gallery.py",
        "/images/{job}.png",
        "/imaginebot.db",
    ],
)
async def test_path_tricks_reach_nothing(site: Site, path: str) -> None:
    job = await site.job(ALICE, "a lighthouse")
    url = site.base + path.format(server=SERVER, job=job, job_upper=job.upper())
    async with browser(site, ALICE) as alice:
        assert await status(alice, url) == 404


async def test_a_stored_path_outside_the_data_dir_is_not_served(site: Site, tmp_path: Path) -> None:
    job = await site.job(ALICE, "a lighthouse")
    secret = tmp_path.parent / "outside.png"
    Image.new("RGB", (8, 8)).save(secret)
    async with site.services.db.session() as session:
        image = next(i for i in (await q.get_job(session, job)).images if i.index == 1)  # type: ignore[union-attr]
        image.path = "../outside.png"  # a row that somehow names a file outside the data dir
    async with browser(site, ALICE) as alice:
        assert await status(alice, f"{site.base}/g/{SERVER}/jobs/{job}/1.png") == 404
        assert await status(alice, f"{site.base}/g/{SERVER}/jobs/{job}/0.png") == 200


async def test_the_admin_page_is_for_admins_and_plots_usage_against_quotas(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.web")
    await site.job(ALICE, "one")
    await site.job(ALICE, "two")
    await site.job(BOB, "three")
    async with site.services.db.session() as session:
        await q.set_quota_rule(session, SERVER, QuotaScope.GUILD, None, jobs_per_day=5)
        await q.set_quota_rule(session, SERVER, QuotaScope.USER, BOB, jobs_per_day=1)
    async with browser(site, ALICE) as member, browser(site) as visitor:
        assert await status(member, f"{site.base}/g/{SERVER}/admin") == 403
        assert await status(visitor, f"{site.base}/g/{SERVER}/admin") == 403
    assert any("admin page for a non-admin" in line for line in refusals(caplog))
    async with browser(site, ADMIN, admin=True) as admin:
        page = await (await admin.get(f"{site.base}/g/{SERVER}/admin")).text()
    assert page.count("<svg") == 4  # jobs and GPU minutes, per day and per member (no hosted images here)
    # Alice made 2 jobs against the server's 5 a day; Bob 1 against his own 1, drawn as over his quota.
    assert "user11: 2 jobs" in page
    assert "user22: 1 jobs" in page
    assert page.count("quota: 5 jobs a day") == 1
    assert page.count("quota: 1 jobs a day") == 1
    assert page.count('class="bar over"') == 1
    assert "GPU minutes" in page


async def test_prompts_and_names_are_shown_as_text_never_as_markup(site: Site) -> None:
    job = await site.job(ALICE, '<img src=x onerror="alert(1)"> "quoted" & <b>bold</b>')
    async with browser(site, ALICE) as alice:
        for path in (f"/g/{SERVER}/", f"/g/{SERVER}/jobs/{job}", f"/g/{SERVER}/?q=%3Cimg"):
            page = await (await alice.get(site.base + path)).text()
            assert "<img src=x" not in page
            assert "<b>bold" not in page
            assert "&lt;img src=x onerror=" in page


async def test_a_members_own_rule_replaces_the_servers_on_the_admin_page_as_in_the_quota_check(
    site: Site,
) -> None:
    # As /quota enforces it (bot.policy.resolve_limits): a member's own rule decides every limit, so a
    # rule that caps only GPU minutes leaves them unlimited in jobs, whatever the server's rule says.
    await site.job(ALICE, "one")
    await site.job(BOB, "two")
    async with site.services.db.session() as session:
        await q.set_quota_rule(
            session, SERVER, QuotaScope.GUILD, None, jobs_per_day=5, gpu_minutes_per_day=30
        )
        await q.set_quota_rule(session, SERVER, QuotaScope.USER, BOB, gpu_minutes_per_day=10)
    async with browser(site, ADMIN, admin=True) as admin:
        page = await (await admin.get(f"{site.base}/g/{SERVER}/admin")).text()
    assert page.count("quota: 5 jobs a day") == 1  # Alice's, by the server's rule; none for Bob
    assert page.count("quota: 30 GPU minutes a day") == 1
    assert page.count("quota: 10 GPU minutes a day") == 1


async def test_every_answer_carries_the_security_headers(site: Site) -> None:
    job = await site.job(ALICE, "a lighthouse")
    async with browser(site, ALICE) as alice:
        for path, expected in [
            (f"/g/{SERVER}/", 200),
            (f"/g/{SERVER}/jobs/{job}", 200),
            (f"/g/{SERVER}/jobs/{job}/0.png", 200),
            (f"/g/{SERVER}/jobs/{job}/0-t.webp", 200),
            ("/static/gallery.css", 200),
            (f"/g/{SERVER}/jobs/{'0' * 32}", 404),
            (f"/g/{SERVER}/admin", 403),
            ("/nowhere", 404),
        ]:
            async with alice.get(site.base + path) as response:
                assert response.status == expected, path
                for name, value in SECURITY_HEADERS.items():
                    assert response.headers.get(name) == value, (path, name)
                if response.content_type == "text/html":
                    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in SECURITY_HEADERS["Content-Security-Policy"]
    assert "'unsafe-inline'" not in SECURITY_HEADERS["Content-Security-Policy"]


async def test_images_keep_their_recipe_and_thumbnails_are_made_once(site: Site) -> None:
    job = await site.job(ALICE, "a lighthouse")
    async with browser(site, ALICE) as alice:
        async with alice.get(f"{site.base}/g/{SERVER}/jobs/{job}/0.png") as response:
            assert response.content_type == "image/png"
            assert (site.data_dir / "images" / f"{job}.png").read_bytes() == await response.read()
        async with alice.get(f"{site.base}/g/{SERVER}/jobs/{job}/0-t.webp") as response:
            assert response.content_type == "image/webp"
            with Image.open(io.BytesIO(await response.read())) as thumb:
                assert (thumb.format, thumb.size) == ("WEBP", (128, 128))  # never enlarged
        cached = site.data_dir / "thumbs" / job[:2] / f"{job}-0-t.webp"
        made = cached.stat().st_mtime_ns
        assert await status(alice, f"{site.base}/g/{SERVER}/jobs/{job}/0-t.webp") == 200
        assert cached.stat().st_mtime_ns == made


async def test_many_visitors_at_once_hold_only_a_few_database_connections(site: Site) -> None:
    # The pool's other connections stay free for the job service: browsing never holds up generation.
    jobs = [await site.job(ALICE, f"picture {n}") for n in range(6)]
    await site.rule(GalleryAccess.PUBLIC)
    pool = site.services.db.engine.sync_engine.pool
    held, most = 0, 0

    def checkout(*_: object) -> None:
        nonlocal held, most
        held += 1
        most = max(most, held)

    def checkin(*_: object) -> None:
        nonlocal held
        held -= 1

    event.listen(pool, "checkout", checkout)
    event.listen(pool, "checkin", checkin)
    try:
        async with browser(site) as visitor:
            urls = [f"{site.base}/g/{SERVER}/jobs/{job}/{cell}-t.webp" for job in jobs for cell in range(5)]
            urls += [f"{site.base}/g/{SERVER}/jobs/{job}" for job in jobs] + [f"{site.base}/g/{SERVER}/"] * 10
            statuses = await asyncio.gather(*(status(visitor, url) for url in urls))
    finally:
        event.remove(pool, "checkout", checkout)
        event.remove(pool, "checkin", checkin)
    assert set(statuses) == {200}
    assert 1 < most <= GALLERY_SESSIONS
