"""A finished job's delivery through the real client: the grid posted first in the Discord format with
its recipe (read back by a third-party reader, sd-parsers), the PNGs written after it, and a button
pressed before they are on disk waiting for them instead of failing."""

from __future__ import annotations

import io
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image
from sd_parsers import ParserManager

from bot.client import INTENTS, ImagineBot
from bot.services import open_services
from bot.store.db import Database
from bot.store.models import Job, JobStatus
from engine import images as engine_images
from engine.simulated import SimulatedBackend
from fakediscord import FakeDiscord, run_bot
from fakediscord.state import WaitTimeout
from tests.bot.discord_fixtures import BotWorld, custom_id, imagine_grid, make_config, started_bot

PROMPT = "a lighthouse at dusk --no fog --seed 100"


def _read_with_sd_parsers(data: bytes) -> tuple[str, str, dict[str, str]]:
    """(prompt, negative prompt, sampler parameters) as sd-parsers reads them from an image file."""
    with Image.open(io.BytesIO(data)) as image:
        info = ParserManager().parse(image)
    assert info is not None, "sd-parsers found no recipe"
    (prompt,) = [p.value for p in info.prompts]
    (negative,) = [p.value for p in info.negative_prompts]
    (sampler,) = info.samplers
    return prompt, negative, dict(sampler.parameters)


@pytest.mark.parametrize(("setting", "pil_format"), [("webp", "WEBP"), ("jpeg", "JPEG"), ("png", "PNG")])
async def test_the_posted_grid_carries_its_recipe_for_a1111_readers(
    fake_discord: FakeDiscord, tmp_path: Path, setting: str, pil_format: str
) -> None:
    config = make_config(tmp_path, discord_image_format=setting)
    async with started_bot(fake_discord, config, SimulatedBackend(seconds=0.05, steps=2)) as world:
        grid = await imagine_grid(world, PROMPT)
        await world.jobs.wait_idle()
        job_id = custom_id(grid, "U1").split(":")[2]
        job = await world.jobs.get(job_id)
    (posted,) = grid.attachments
    with Image.open(io.BytesIO(posted.data)) as image:
        assert image.format == pil_format
        assert image.size == (128, 128)
    # What Discord received, read by a third-party A1111 reader.
    assert _read_with_sd_parsers(posted.data) == (
        "a lighthouse at dusk",
        "fog",
        {"cfg_scale": "7", "seed": "100", "steps": "2"},
    )
    # The data dir keeps the PNGs with their `parameters` chunk; /show posts the very bytes Discord got.
    assert job.grid_path is not None
    assert (tmp_path / job.grid_path).read_bytes() == posted.data
    files = {image.index: tmp_path / image.path for image in job.images}
    assert sorted(files) == [0, 1, 2, 3, 4]
    for index, path in files.items():
        assert path.suffix == ".png"
        with Image.open(path) as png:
            assert png.format == "PNG"
            assert "parameters" in png.info
        seed = str(100 + max(0, index - 1))
        assert _read_with_sd_parsers(path.read_bytes())[2]["seed"] == seed
    if setting == "png":  # the grid PNG is the attachment: written once, from the same bytes
        assert files[0] == tmp_path / job.grid_path


@contextmanager
def busy_file_writer() -> Iterator[threading.Event]:
    """Hold every thread of the pool that writes the PNGs (as a backlog of earlier jobs would) until
    the returned event is set."""
    release = threading.Event()
    pool = engine_images._default_encoder()  # the bot's own pool: its jobs queue behind these
    held = [pool.submit(release.wait, 30) for _ in range(os.cpu_count() or 2)]
    try:
        yield release
    finally:
        release.set()
        for future in held:
            future.result(timeout=30)


async def _job_row(db: Database, job_id: str) -> Job:
    async with db.session() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        return job


async def test_the_grid_is_posted_before_its_files_and_a_press_waits_for_them(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    backend = SimulatedBackend(seconds=0.05, steps=2)
    async with started_bot(fake_discord, make_config(tmp_path), backend) as world:
        with busy_file_writer() as release:
            grid = await imagine_grid(world, PROMPT)
            job_id = custom_id(grid, "U1").split(":")[2]
            # Posted while nothing is on disk: the row still says running and names no file, so a
            # crash now leaves a job that the next start runs again, not one that claims lost files.
            job = await _job_row(world.services.db, job_id)
            assert job.status is JobStatus.RUNNING
            assert job.images == []
            assert not list((tmp_path / "images").rglob("*.png"))

            click = await fake_discord.click(grid, custom_id(grid, "U2"), user=fake_discord.member)
            with pytest.raises(WaitTimeout):
                await click.response(timeout=0.3)  # it waits for the cell, it does not fail
            release.set()
            await click.response(timeout=2.5)
        upscale = await fake_discord.wait_for_message(
            lambda m: (
                m.content.startswith("**a lighthouse at dusk")
                and "Image #2" in m.content
                and bool(m.attachments)
            ),
            timeout=10,
        )
        await world.jobs.wait_idle()
        assert (await world.jobs.get(job_id)).status is JobStatus.SUCCEEDED
    assert upscale.attachments[0].filename.endswith(".webp")
    assert backend.calls[-1].init_image is not None
    assert backend.calls[-1].init_image.name == f"{job_id}-2.png"


async def test_a_press_waits_for_the_files_at_most_until_discord_needs_an_answer(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    async with started_bot(fake_discord, make_config(tmp_path), SimulatedBackend(seconds=0.05)) as world:
        with busy_file_writer():
            grid = await imagine_grid(world, PROMPT)
            click = await fake_discord.click(grid, custom_id(grid, "U1"), user=fake_discord.member)
            answer = await click.response(timeout=3)  # answered in time, with a reason to wait
            notices = [m.content for m in click.followups()] + [str(answer.data)]
            assert any("no images yet" in notice for notice in notices), notices


async def test_files_that_cannot_be_written_fail_the_job_and_take_its_grid_down(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    config = make_config(tmp_path)
    async with open_services(config, backend=SimulatedBackend(seconds=0.05), grace_s=1.0) as services:
        bot = ImagineBot(services, intents=INTENTS)
        # The bot logs the unexpected OSError with its incident id: expected here, so not a failure.
        async with run_bot(bot, fake_discord, error_loggers=("discord",)) as running:
            world = BotWorld(fake_discord, running, bot, services)
            with busy_file_writer():
                grid = await imagine_grid(world, PROMPT)
                job_id = custom_id(grid, "U1").split(":")[2]
                folder = tmp_path / "images" / job_id[:2]
                shutil.rmtree(folder)
                folder.write_bytes(b"")  # a file where the folder was: every write fails
            await services.jobs.wait_idle()
            job = await _job_row(services.db, job_id)
    assert job.status is JobStatus.FAILED
    assert job.images == []
    assert job.grid_path is None
    # The grid that went out is taken down: its message says the job failed, with no image and no buttons.
    assert "(failed: " in grid.content
    assert grid.attachments == []
    assert grid.custom_ids() == []
