"""`imaginebot run` as a real process against the fake Discord: SIGKILL mid-run loses nothing, and
SIGTERM closes it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from fakediscord import FakeDiscord, MessageRecord
from tests.bot.web.gallery_fixtures import free_port, gallery_link

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def random_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny architecture with random weights, as a local diffusers folder (pictures don't matter here)."""
    from engine.tiny import build_random_pipeline

    folder = tmp_path_factory.mktemp("tiny-random")
    build_random_pipeline().save_pretrained(folder)
    return folder


async def _start(
    fake: FakeDiscord, data_dir: Path, model: Path, log: Path, web_port: int
) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "fakediscord/sitecustomize"), str(ROOT)]),
        "FAKE_DISCORD_URL": fake.url,
        "DISCORD_TOKEN": "fake-bot-token",
        "IMAGINE_DATA_DIR": str(data_dir),
        "IMAGINE_MODEL": str(model),
        "IMAGINE_DEVICE": "cpu",
        "IMAGINE_PROGRESS_INTERVAL_S": "0.5",
        "IMAGINE_DIFFUSION_UPSCALE": "false",
        "IMAGINE_WEB_PORT": str(web_port),
    }
    with log.open("ab") as stderr:  # the child keeps its own copy of the handle
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", env=env, cwd=data_dir, stderr=stderr
        )


@pytest.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    started: list[asyncio.subprocess.Process] = []
    yield started
    for proc in started:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sigkill_mid_run_then_restart_finishes_every_job(
    fake_discord: FakeDiscord,
    tmp_path: Path,
    random_tiny_model: Path,
    processes: list[asyncio.subprocess.Process],
) -> None:
    fake = fake_discord
    log = tmp_path / "bot.log"
    web_port = free_port()
    processes.append(await _start(fake, tmp_path, random_tiny_model, log, web_port))
    await fake.wait_until_synced(count=1, timeout=90)

    messages: list[MessageRecord] = []
    for user, prompt in [
        (fake.member, "a red circle --steps 4"),
        (fake.other_member, "a blue square --steps 1"),
    ]:
        interaction = await fake.slash("imagine", {"prompt": prompt}, user=user)
        messages.append(await interaction.wait_original(timeout=5))
    running, waiting = messages
    # Kill it while the first job is denoising and the second waits behind it.
    await fake.wait_for(lambda _: running.content.endswith("%)"), timeout=60, what="the first job's progress")
    assert waiting.content.endswith("(Waiting to start)")
    processes[0].send_signal(signal.SIGKILL)
    await processes[0].wait()
    await fake.wait_for(lambda _: not fake.sessions, timeout=10, what="the killed bot's gateway to drop")

    processes.append(await _start(fake, tmp_path, random_tiny_model, log, web_port))
    await fake.wait_for(
        lambda _: all(len(m.custom_ids()) == 9 and m.attachments for m in messages),
        timeout=120,
        what="both jobs to post their grids after the restart",
    )
    assert running.content == f"**a red circle --steps 4** - <@{fake.member.user.id}>"
    assert waiting.content == f"**a blue square --steps 1** - <@{fake.other_member.user.id}>"
    # `imaginebot run` serves the web gallery beside the bot: the member's link shows the resumed job.
    link = await gallery_link(fake, fake.member)
    assert link.startswith(f"http://127.0.0.1:{web_port}/login?t=")
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
        http.get(link) as page,
    ):
        assert page.status == 200
        assert "a red circle --steps 4" in await page.text()
    # SIGTERM closes it gracefully: exit status 0, the gateway closed by the bot.
    processes[1].send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(processes[1].wait(), timeout=30) == 0
    text = log.read_text()
    assert "received SIGTERM" in text
    assert "resumed after restart" in text
    assert "fake-bot-token" not in text
