"""The web gallery in a real browser: Playwright drives the system's Chromium (Debian's `chromium`
package; `scripts/test` installs it where it can) against the bot serving its gallery beside the
loopback fake Discord.

Skipped only when Playwright is not installed or no Chromium is on PATH: Playwright's own browser
download is never used. `IMAGINE_TEST_SHOTS=<folder>` keeps the full-page screenshots there (they
always go to the test's temporary folder).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.store.models import Job, JobKind
from engine.images import read_recipe
from engine.simulated import SimulatedBackend
from fakediscord import FakeDiscord
from tests.bot.discord_fixtures import BotWorld, custom_id, imagine_grid
from tests.bot.web.gallery_fixtures import gallery_bot, gallery_link

try:
    from playwright.async_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Locator,
        Page,
        Request,
        Response,
        async_playwright,
        expect,
    )
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip("playwright is not installed (it comes with the `dev` extra)", allow_module_level=True)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:  # pragma: no cover - depends on the machine
    pytest.skip(
        "no Chromium on PATH (Debian: apt-get install chromium; scripts/test does it when it may)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.slow  # a browser and a bot: several seconds on a busy 2-core machine

PROMPT = "a lighthouse at dusk --ar 16:9 --seed 5"
STORED_PROMPT = "a lighthouse at dusk --aspect 16:9 --seed 5"  # as the bot stores it: --ar spelled out
OTHER_PROMPT = "a red fox asleep in the snow --seed 7"

# Reports every CSP violation to the test (an init script runs before the page's own and is not
# subject to its CSP; the exposed function outlives each page, so no violation is lost on navigation).
_WATCH_CSP = """
document.addEventListener("securitypolicyviolation", (event) => {
  const blocked = event.blockedURI || "inline code";
  window.reportCspViolation(`${event.violatedDirective} blocked ${blocked} on ${location.pathname}`);
});
"""


class PageProblems:
    """What went wrong in any page of a browser context that a visitor would not see at once:
    console errors and warnings, uncaught exceptions, failed requests and CSP violations."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    @classmethod
    async def watch(cls, context: BrowserContext) -> PageProblems:
        problems = cls()
        context.on("console", problems._console)
        context.on("weberror", lambda error: problems.errors.append(f"uncaught: {error.error}"))
        context.on("requestfailed", problems._request_failed)
        context.on("response", problems._response)
        await context.expose_function(
            "reportCspViolation", lambda text: problems.errors.append(f"CSP: {text}")
        )
        await context.add_init_script(_WATCH_CSP)
        return problems

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"console {message.type}: {message.text} ({message.location['url']})")

    def _request_failed(self, request: Request) -> None:
        if request.failure != "net::ERR_ABORTED":  # aborted: the page was left before it came
            self.errors.append(f"request failed: {request.url} ({request.failure})")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.errors.append(f"HTTP {response.status}: {response.url}")

    def assert_none(self) -> None:
        assert self.errors == [], self.errors


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh profile; the gallery (http://127.0.0.1, a secure context) may use the clipboard."""
    context = await browser.new_context(
        viewport={"width": 1280, "height": 800}, permissions=["clipboard-read", "clipboard-write"]
    )
    try:
        yield context
    finally:
        await context.close()


@pytest.fixture
async def problems(context: BrowserContext) -> PageProblems:
    return await PageProblems.watch(context)


@pytest.fixture
def shots(tmp_path: Path) -> list[Path]:
    """Where full-page screenshots go: the test's folder, and `IMAGINE_TEST_SHOTS` when set."""
    folders = [tmp_path / "shots"]
    if extra := os.environ.get("IMAGINE_TEST_SHOTS"):
        folders.append(Path(extra))
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


async def _screenshot(page: Page, folders: list[Path], name: str) -> None:
    data = await page.screenshot(full_page=True)
    for folder in folders:
        (folder / f"{name}.png").write_bytes(data)


async def _assert_loaded(page: Page, images: Locator) -> None:
    """Every image `images` matches has loaded and decoded (a broken one has naturalWidth 0)."""
    count = await images.count()
    assert count > 0, f"no such images on {page.url}"
    for i in range(count):
        image = await images.nth(i).element_handle()
        await page.wait_for_function("img => img.complete", arg=image, timeout=5000)
        width = await image.evaluate("img => img.naturalWidth")
        assert width > 0, f"{await image.get_attribute('src')} did not load on {page.url}"


async def _children(world: BotWorld, parent_id: str) -> dict[str, Job]:
    """The jobs made from `parent_id`, by their button (`U1`, `V2`)."""
    async with world.services.db.session() as session:
        jobs = (await session.scalars(select(Job).where(Job.parent_id == parent_id))).all()
    letters = {JobKind.UPSCALE: "U", JobKind.VARIATION: "V"}
    return {f"{letters[job.kind]}{job.parent_index}": job for job in jobs}


async def test_a_member_browses_searches_and_copies_a_recipe(
    fake_discord: FakeDiscord,
    tmp_path: Path,
    context: BrowserContext,
    problems: PageProblems,
    shots: list[Path],
) -> None:
    fake, member = fake_discord, fake_discord.member
    backend = SimulatedBackend(seconds=0.1, steps=2)
    async with gallery_bot(fake, tmp_path, backend) as (world, base):
        # 1. In Discord: a grid, its V2 and U1, and an unrelated grid the search must leave out.
        grid = await imagine_grid(world, PROMPT)
        grid_id = custom_id(grid, "U1").split(":")[2]
        for label in ("V2", "U1"):
            click = await fake.click(grid, custom_id(grid, label), user=member)
            await click.response(timeout=3)
        await imagine_grid(world, OTHER_PROMPT)
        await world.jobs.wait_idle()
        made = await _children(world, grid_id)
        assert sorted(made) == ["U1", "V2"]
        variation_id = made["V2"].id
        link = await gallery_link(fake, member)
        guild = f"/g/{fake.guild.id}"

        page = await context.new_page()

        # 2. The link signs the member in and lands on their gallery, the new grid on it.
        await page.goto(link)
        await expect(page).to_have_url(f"{base}{guild}/")
        await expect(page.locator("h1")).to_have_text("Your images")
        cards = page.locator("li.card")
        await expect(cards).to_have_count(4)  # two grids, the variation grid and the upscale
        grid_card = cards.filter(has=page.locator(f'a[href="{guild}/jobs/{grid_id}"]'))
        await expect(grid_card.locator(".prompt")).to_have_text(STORED_PROMPT)
        await expect(grid_card.locator(".kind")).to_have_text("/imagine")
        await _assert_loaded(page, cards.locator("img"))
        await _screenshot(page, shots, "1-gallery")

        # 3. The grid's page: its picture, four cells, its recipe and its family.
        await grid_card.locator("a").first.click()
        await expect(page).to_have_url(f"{base}{guild}/jobs/{grid_id}")
        await expect(page.locator("h1#prompt")).to_have_text(STORED_PROMPT)
        await expect(page.locator("ul.cells > li")).to_have_count(4)
        await _assert_loaded(page, page.locator("figure.main img, ul.cells img, ul.tree img"))
        tree = page.locator("ul.tree")
        await expect(tree.locator('a[aria-current="page"] .kind')).to_have_text("/imagine")
        await expect(tree.locator("a .kind")).to_have_text(["/imagine", "V2", "U1"])
        await _screenshot(page, shots, "2-job")

        # 4. "Copy recipe" puts the grid's recipe, as its PNG carries it, on the clipboard.
        png = await page.request.get(f"{base}{guild}/jobs/{grid_id}/0.png")
        assert png.ok
        recipe = read_recipe(await png.body())
        assert recipe is not None
        assert recipe.startswith("a lighthouse at dusk"), recipe
        await expect(page.locator("pre#recipe")).to_have_text(recipe)
        copy = page.locator('button[data-copy="recipe"]')
        await expect(copy).to_have_text("Copy recipe")
        await copy.click()
        await expect(copy).to_have_text("Copied")
        assert await page.evaluate("navigator.clipboard.readText()") == recipe
        await expect(copy).to_have_text("Copy recipe", timeout=5000)  # and it says so only for a moment
        problems.assert_none()

        # 5. Down the family tree to the variation: its own page, marked as the current node.
        await tree.locator("a", has_text="V2").click()
        await expect(page).to_have_url(f"{base}{guild}/jobs/{variation_id}")
        await expect(page.locator("h1#prompt")).to_have_text(STORED_PROMPT)
        await expect(page.locator("p.meta .kind")).to_have_text("Variations (Strong)")
        await expect(tree.locator('a[aria-current="page"] .kind')).to_have_text("V2")
        await expect(tree.locator(f'a[href="{guild}/jobs/{grid_id}"]')).to_be_visible()
        await _assert_loaded(page, page.locator("figure.main img, ul.cells img"))
        problems.assert_none()

        # 6. Search from the gallery: a word of the prompt finds its jobs and only those.
        await page.get_by_role("link", name="Gallery").click()
        await page.get_by_role("searchbox", name="Search prompts").fill("lighthouse")
        await page.get_by_role("button", name="Search").click()
        await expect(page).to_have_url(re.compile(rf"^{re.escape(base + guild)}/\?q=lighthouse(&|$)"))
        await expect(cards).to_have_count(3)
        await expect(cards.locator(".prompt")).to_have_text([STORED_PROMPT] * 3)
        await expect(page.get_by_role("link", name="Clear")).to_be_visible()
        await _assert_loaded(page, cards.locator("img"))
        await _screenshot(page, shots, "3-search")

        # ... and a word no prompt has shows the empty message, the word kept in the box.
        await page.get_by_role("searchbox", name="Search prompts").fill("zeppelin")
        await page.get_by_role("button", name="Search").click()
        await expect(page.locator("p.empty")).to_have_text("Nothing matches this search.")
        await expect(cards).to_have_count(0)
        await expect(page.get_by_role("searchbox", name="Search prompts")).to_have_value("zeppelin")
        await _screenshot(page, shots, "4-search-empty")
        problems.assert_none()
