"""Nothing lost across a restart: unfinished jobs resume (or fail with a notice) and old buttons work."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import select

from bot.store.models import Job, JobStatus
from engine.simulated import SimulatedBackend
from fakediscord import FakeDiscord
from tests.bot.discord_fixtures import custom_id, imagine_grid, make_config, started_bot


async def test_restart_resumes_unfinished_jobs_and_keeps_old_buttons_working(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    fake = fake_discord
    config = make_config(tmp_path)
    held = threading.Event()
    first_backend = SimulatedBackend(seconds=0.05, steps=2, gate=held)
    held.set()
    async with started_bot(fake, config, first_backend, wait_jobs=False) as world:
        grid = await imagine_grid(world, "before the restart --seed 3")
        await world.jobs.wait_idle()
        held.clear()  # the device hangs: the next jobs never finish in this run
        running = await fake.slash("imagine", {"prompt": "running at the crash"})
        await running.response(timeout=3)
        running_message = await running.wait_original()
        waiting = await fake.slash("imagine", {"prompt": "waiting at the crash"}, user=fake.other_member)
        await waiting.response(timeout=3)
        waiting_message = await waiting.wait_original()
        await fake.wait_for(lambda _: first_backend.calls[-1].prompt == "running at the crash", timeout=5)
        async with world.bot.db.session() as session:
            states = {j.prompt: j.status for j in (await session.scalars(select(Job))).all()}
    # The bot went away with one job running and one waiting; both are still unfinished on disk.
    assert states["running at the crash"] is JobStatus.RUNNING
    assert states["waiting at the crash"] is JobStatus.QUEUED

    second_backend = SimulatedBackend(seconds=0.05, steps=2)
    async with started_bot(fake, config, second_backend) as world:
        # Both resume by themselves and finish in the messages they already had.
        await fake.wait_for(
            lambda _: len(running_message.custom_ids()) == 9 and len(waiting_message.custom_ids()) == 9,
            timeout=15,
            what="both unfinished jobs to post their grids after the restart",
        )
        assert running_message.content == f"**running at the crash** - <@{fake.member.user.id}>"
        assert waiting_message.content == f"**waiting at the crash** - <@{fake.other_member.user.id}>"

        # A button posted by the previous run still works.
        press = await fake.click(grid, custom_id(grid, "U4"))
        await press.response(timeout=3)
        await fake.wait_for_message(lambda m: "Image #4" in m.content and bool(m.attachments), timeout=10)
        await world.jobs.wait_idle()
        assert second_backend.calls[-1].seed == 6  # cell 4 of the grid seeded 3, from the old run
        async with world.bot.db.session() as session:
            jobs = (await session.scalars(select(Job))).all()
        assert all(job.status is JobStatus.SUCCEEDED for job in jobs)


async def test_a_job_that_cannot_resume_fails_with_a_notice(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    fake = fake_discord
    config = make_config(tmp_path)
    held = threading.Event()
    backend = SimulatedBackend(seconds=0.05, steps=2, gate=held)
    held.set()
    async with started_bot(fake, config, backend, wait_jobs=False) as world:
        grid = await imagine_grid(world, "a source")
        await world.jobs.wait_idle()
        held.clear()
        press = await fake.click(grid, custom_id(grid, "V1"))
        await press.response(timeout=3)
        variation_message = await press.wait_original()
        await fake.wait_for(lambda _: backend.calls[-1].init_image is not None, timeout=5)
        source = backend.calls[-1].init_image
    assert source is not None
    source.unlink()  # the data dir lost the cell the variation starts from

    async with started_bot(fake, config, SimulatedBackend(seconds=0.05)):
        await fake.wait_for(
            lambda _: "(failed:" in variation_message.content, timeout=10, what="a failure notice"
        )
    assert "source image is gone" in variation_message.content
    assert f"<@{fake.member.user.id}>" in variation_message.content
