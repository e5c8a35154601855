"""The gallery through the whole bot: `/imagine`, U and V through the loopback fake Discord, then `/gallery`'s
link, the gallery, search and filters, a job's page with its family tree and files; `/config gallery`."""

from __future__ import annotations

import io
import re
from pathlib import Path

import aiohttp
from PIL import Image

from bot.cogs.gallery import GALLERY_OFF
from engine.images import read_recipe
from engine.simulated import SimulatedBackend
from fakediscord import FakeDiscord
from tests.bot.discord_fixtures import custom_id, imagine_grid, make_config, started_bot
from tests.bot.web.gallery_fixtures import gallery_bot, gallery_link

_JOB_LINK = re.compile(r'href="/g/\d+/jobs/([0-9a-f]{32})"')


def job_links(page: str) -> list[str]:
    return list(dict.fromkeys(_JOB_LINK.findall(page)))


async def test_a_member_finds_their_grid_its_family_and_its_files(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    fake = fake_discord
    async with gallery_bot(fake, tmp_path, SimulatedBackend(seconds=0.1, steps=2)) as (world, base):
        grid = await imagine_grid(world, "a lighthouse at dusk --ar 16:9 --seed 5")
        grid_job = custom_id(grid, "U1").split(":")[2]
        for button in ("U1", "V2"):
            await (await fake.click(grid, custom_id(grid, button), user=fake.member)).response(timeout=3)
        await world.jobs.wait_idle()
        await imagine_grid(world, "a red circle", user=fake.other_member)
        link = await gallery_link(fake, fake.member)
        assert link.startswith(f"{base}/login?t=")

        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(link) as response:  # the link signs her in and lands on the gallery
                assert str(response.url) == f"{base}/g/{fake.guild.id}/"
                gallery = await response.text()
            # Newest first: the variation, the upscale, then the grid; the other member's is private (off).
            listed = job_links(gallery)
            assert len(listed) == 3
            assert listed[-1] == grid_job
            assert "a red circle" not in gallery
            assert "Fake Guild" in gallery
            assert fake.member.user.name in gallery

            page = await (await http.get(f"{base}/g/{fake.guild.id}/jobs/{grid_job}")).text()
            family = job_links(page.split("<h2>Family</h2>", 1)[1])
            assert family[0] == grid_job
            assert set(family) == set(listed)
            assert ">U1</span>" in page
            assert ">V2</span>" in page
            assert ">/imagine</span>" in page
            assert page.count("download>PNG</a>") == 4  # the four cells, each downloadable

            async with http.get(f"{base}/g/{fake.guild.id}/jobs/{grid_job}/0.png") as response:
                png = await response.read()
            recipe = read_recipe(png)
            assert recipe is not None
            assert "Seed: 5" in recipe
            assert recipe.splitlines()[0] in page  # the page shows the file's own recipe
            async with http.get(f"{base}/g/{fake.guild.id}/jobs/{grid_job}/0-t.webp") as response:
                with (
                    Image.open(io.BytesIO(await response.read())) as thumb,
                    Image.open(io.BytesIO(png)) as full,
                ):
                    assert thumb.format == "WEBP"
                    assert thumb.size == full.size  # a small grid is never enlarged

            async def search(query: str) -> list[str]:
                async with http.get(f"{base}/g/{fake.guild.id}/?{query}") as response:
                    assert response.status == 200
                    return job_links(await response.text())

            assert len(await search("q=LIGHTHOUSE+dusk")) == 3
            assert await search("q=lighthouse+zebra") == []
            assert await search("q=circle") == []  # the other member's job stays private
            assert await search("ar=16:9") == listed
            assert await search("ar=1:1") == []
            assert await search("model=simulated") == listed
            assert await search("model=tiny") == []
            assert await search("since=2000-01-01&until=2000-12-31") == []
            page = await (await http.get(f"{base}/g/{fake.guild.id}/?since=yesterday&ar=wide")).text()
            assert "looks like 2026-11-30" in page
            assert "two whole numbers" in page
            assert len(job_links(page)) == 3  # a bad filter is named and ignored, not an error

        # With the server's gallery open to members, the other member sees hers too, and can filter by her.
        admin_answer = await (
            await fake.slash("config gallery", {"access": "members"}, user=fake.admin)
        ).response(timeout=3)
        assert "`members`" in admin_answer.data["content"]
        other = await gallery_link(fake, fake.other_member)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(other) as response:
                everyone = job_links(await response.text())
            assert len(everyone) == 4
            mine = job_links(await (await http.get(f"{base}/g/{fake.guild.id}/me")).text())
            assert len(mine) == 1
            assert mine[0] not in listed
            hers = job_links(
                await (await http.get(f"{base}/g/{fake.guild.id}/?member={fake.member.user.id}")).text()
            )
            assert hers == listed


async def test_paging_goes_on_from_the_last_job_shown(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    from bot.web._pages import PAGE_SIZE

    fake = fake_discord
    async with gallery_bot(fake, tmp_path, SimulatedBackend(seconds=0.0, steps=1)) as (world, base):
        # More jobs than a page holds, made the way /imagine makes them (`--repeat`: one message each).
        for _ in range(PAGE_SIZE // 4 + 1):
            answer = await (
                await fake.slash("imagine", {"prompt": "a tide pool --r 4"}, user=fake.member)
            ).response(timeout=3)
            assert answer.data.get("flags", 0) & 64 == 0, answer.data
            await world.jobs.wait_idle()
        link = await gallery_link(fake, fake.member)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            first = await (await http.get(link)).text()
            older = re.search(r'rel="next" href="([^"]+)"', first)
            assert older is not None
            second = await (await http.get(base + older.group(1).replace("&amp;", "&"))).text()
        one, two = job_links(first), job_links(second)
        assert len(one) == PAGE_SIZE
        assert len(two) == 4
        assert not set(one) & set(two)
        assert 'rel="next"' not in second


async def test_gallery_says_so_when_the_owner_turned_it_off(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    async with started_bot(fake_discord, make_config(tmp_path, web_port=0), SimulatedBackend()):
        answer = await (await fake_discord.slash("gallery", {}, user=fake_discord.member)).response(timeout=3)
    assert answer.data["flags"] & 64
    assert answer.data["content"] == GALLERY_OFF


async def test_behind_an_https_proxy_links_use_its_address_and_the_cookie_is_secure(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    fake = fake_discord
    async with gallery_bot(fake, tmp_path, SimulatedBackend(), web_url="https://gallery.example.org/") as (
        _,
        base,
    ):
        answer = await (await fake.slash("gallery", {}, user=fake.member)).response(timeout=3)
        link = re.search(r"\]\((https://gallery\.example\.org/login\?t=[^)]+)\)", answer.data["content"])
        assert link is not None, answer.data["content"]
        # The proxy would forward it here; the session cookie may then only travel over https.
        local = link.group(1).replace("https://gallery.example.org", base)
        async with aiohttp.ClientSession() as http, http.get(local, allow_redirects=False) as response:
            assert response.status == 303
            assert response.cookies[f"imaginebot_{fake.guild.id}"]["secure"] is True
