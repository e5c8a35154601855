"""/info, /history, /show and /cancel, and results that outlive the interaction token."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import select

from bot.presenter import DiscordPresenter
from bot.store import queries as q
from bot.store.models import Job, JobKind, JobStatus
from engine.simulated import SimulatedBackend
from fakediscord import FakeDiscord
from tests.bot.discord_fixtures import imagine_grid, make_config, started_bot

EPHEMERAL = 64


async def test_result_arrives_after_the_interaction_token_expired(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    gate = threading.Event()
    backend = SimulatedBackend(seconds=0.05, steps=2, gate=gate)
    async with started_bot(fake_discord, make_config(tmp_path), backend) as world:
        fake = fake_discord
        interaction = await fake.slash("imagine", {"prompt": "a slow sunrise"})
        await interaction.response(timeout=3)
        original = await interaction.wait_original()
        fake.expire_token(interaction)  # 15 minutes later, as far as the webhook is concerned
        # A Discord hiccup while posting the result is retried.
        fake.fail_next("PATCH /channels/*/messages/*", status=503, times=2)
        gate.set()
        await fake.wait_for(lambda _: len(original.custom_ids()) == 9, timeout=15, what="the grid")
        await world.jobs.wait_idle()
        assert original.content == f"**a slow sunrise** - <@{fake.member.user.id}>"
        assert original.attachments
        assert not [v for v in fake.state.violations if "token" in v.kind.lower()]


async def test_info_history_show_and_cancel(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    gate = threading.Event()
    backend = SimulatedBackend(seconds=0.05, steps=2, gate=gate)
    gate.set()
    async with started_bot(fake_discord, make_config(tmp_path), backend) as world:
        fake = fake_discord
        grid = await imagine_grid(world, "a done job")
        await world.jobs.wait_idle()
        done_id = grid.custom_ids()[0].split(":")[2]

        gate.clear()
        held = await fake.slash("imagine", {"prompt": "a held job"})
        await held.response(timeout=3)
        held_message = await held.wait_original()

        info = await (await fake.slash("info")).response(timeout=3)
        assert info.data["flags"] & EPHEMERAL
        assert "**Jobs today:** 1 of unlimited" in info.data["content"]
        assert "running" in info.data["content"]
        assert "resets:** <t:" in info.data["content"]
        assert "**At once:** up to 3 running and 10 waiting" in info.data["content"]

        history = await (await fake.slash("history")).response(timeout=3)
        assert f"`{done_id}`" in history.data["content"]
        assert f"/{grid.id}" in history.data["content"]
        others = await (await fake.slash("history", {"user": fake.other_member.user.id})).response(timeout=3)
        assert "has no jobs yet" in others.data["content"]

        # /cancel with no id cancels the newest waiting or running job, and its message says so.
        cancelled = await (await fake.slash("cancel")).response(timeout=3)
        assert cancelled.data["flags"] & EPHEMERAL
        await fake.wait_for(lambda _: held_message.content.endswith("(cancelled)"), timeout=10, what="cancel")
        nothing = await (await fake.slash("cancel")).response(timeout=3)
        assert "no waiting or running job" in nothing.data["content"]

        # /show reposts a finished grid with working buttons.
        shown = await fake.slash("show", {"job_id": done_id})
        await shown.response(timeout=3)
        reposted = await shown.wait_original()
        assert reposted.custom_ids() == grid.custom_ids()
        assert reposted.attachments[0].data == grid.attachments[0].data
        gate.set()
        press = await fake.click(reposted, reposted.custom_ids()[0])
        assert not (await press.response(timeout=3)).data.get("flags", 0) & EPHEMERAL
        await fake.wait_for_message(lambda m: "Image #1" in m.content and bool(m.attachments), timeout=10)

        unknown = await (await fake.slash("show", {"job_id": "0" * 32})).response(timeout=3)
        assert "/history" in unknown.data["content"]
        await world.jobs.wait_idle()
        async with world.bot.db.session() as session:
            statuses = sorted(job.status for job in (await session.scalars(select(Job))).all())
        assert statuses == sorted([JobStatus.SUCCEEDED, JobStatus.CANCELLED, JobStatus.SUCCEEDED])


async def test_cancel_ends_a_row_no_queue_knows_and_refuses_a_finished_job(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    async with started_bot(fake_discord, make_config(tmp_path), SimulatedBackend(seconds=0.01)) as world:
        fake = fake_discord
        grid = await imagine_grid(world, "a finished job")
        done_id = grid.custom_ids()[0].split(":")[2]
        # A row left queued with nothing in the queue behind it (as a crashed process would leave it).
        async with world.bot.db.session() as session:
            stale = await q.create_job(
                session,
                kind=JobKind.IMAGINE,
                user_id=fake.member.user.id,
                guild_id=fake.guild.id,
                channel_id=fake.channel.id,
                prompt="a stale row",
                seed=1,
            )
        answer = await (await fake.slash("cancel", {"job": stale.id})).response(timeout=3)
        assert answer.data["content"] == f"Cancelled job `{stale.id}`."
        notice = await fake.wait_for_message(lambda m: m.content.startswith("**a stale row**"), timeout=5)
        assert notice.content.endswith("(cancelled)")
        assert (await world.jobs.get(stale.id)).status is JobStatus.CANCELLED

        again = await (await fake.slash("cancel", {"job": done_id})).response(timeout=3)
        assert again.data["flags"] & EPHEMERAL
        assert "already succeeded; there is nothing to cancel" in again.data["content"]


async def test_a_result_whose_message_was_deleted_is_posted_anew(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    gate = threading.Event()
    async with started_bot(fake_discord, make_config(tmp_path), SimulatedBackend(gate=gate)) as world:
        fake = fake_discord
        interaction = await fake.slash("imagine", {"prompt": "an orphaned grid"})
        fake.delete_message(await interaction.wait_original())  # someone deleted it while it waited
        gate.set()
        await world.jobs.wait_idle()
        (posted,) = [
            m for m in fake.messages_in(fake.channel) if m.content.startswith("**an orphaned grid**")
        ]
        assert len(posted.custom_ids()) == 9
        assert posted.attachments
        job = await world.jobs.get(posted.custom_ids()[0].split(":")[2])
        assert job.message_id == posted.id


async def test_when_discord_keeps_failing_the_result_is_kept_and_show_reposts_it(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    gate = threading.Event()
    backend = SimulatedBackend(seconds=0.05, steps=2, gate=gate)
    async with started_bot(fake_discord, make_config(tmp_path), backend) as world:
        fake = fake_discord
        presenter = world.jobs.presenter
        assert isinstance(presenter, DiscordPresenter)
        presenter.retry_delays = (0.05, 0.05)
        interaction = await fake.slash("imagine", {"prompt": "an unlucky post"})
        message = await interaction.wait_original()
        fake.fail_next("* /channels/*/messages*", status=503, times=1000)
        gate.set()
        await world.jobs.wait_idle()
        assert message.custom_ids() == []  # Discord never took the grid

        async with world.bot.db.session() as session:
            (job,) = (await session.scalars(select(Job))).all()
        assert job.status is JobStatus.SUCCEEDED
        assert (tmp_path / str(job.grid_path)).exists()
        shown = await fake.slash("show", {"job_id": job.id})
        reposted = await shown.wait_original()
        assert len(reposted.custom_ids()) == 9
        assert reposted.attachments


async def test_if_answering_the_interaction_fails_the_job_posts_its_own_message(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    async with started_bot(fake_discord, make_config(tmp_path), SimulatedBackend(seconds=0.05)) as world:
        fake = fake_discord
        fake.fail_next("POST /interactions/*", status=400, times=1)
        await fake.slash("imagine", {"prompt": "a stubborn goat"})
        grid = await fake.wait_for_message(
            lambda m: (
                m.content == f"**a stubborn goat** - <@{fake.member.user.id}>" and len(m.custom_ids()) == 9
            ),
            timeout=10,
        )
        await world.jobs.wait_idle()
        assert grid.interaction_id is None  # posted through the channel, not as the interaction's answer
        assert grid.history[0].content.endswith("(Waiting to start)")
