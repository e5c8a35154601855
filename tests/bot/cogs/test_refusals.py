"""Refusals are ephemeral, arrive within 3 s, and queue nothing: bad prompts, banned words, channels,
quotas and the per-user waiting limit."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.store.models import Job, UsageEntry
from engine.simulated import SimulatedBackend
from engine.types import GenerationRequest
from fakediscord import FakeDiscord, InteractionRecord
from tests.bot.discord_fixtures import BotWorld, imagine_grid, make_config, started_bot

EPHEMERAL = 64


async def _job_count(world: BotWorld) -> int:
    async with world.bot.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Job)) or 0)


async def _refused(interaction: InteractionRecord) -> str:
    answer = await interaction.response(timeout=3)
    assert interaction.ack_latency is not None
    assert interaction.ack_latency < 3
    assert answer.data["flags"] & EPHEMERAL, answer.data
    return str(answer.data["content"])


async def _admin(world: BotWorld, command: str, options: dict[str, object]) -> None:
    answer = await (await world.fake.slash(command, options, user=world.fake.admin)).response(timeout=3)
    assert answer.data["flags"] & EPHEMERAL


async def test_bad_prompt_banned_word_and_channel_are_refused_ephemerally(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    backend = SimulatedBackend(seconds=0.05)
    async with started_bot(fake_discord, make_config(tmp_path), backend) as world:
        fake = fake_discord
        text = await _refused(await fake.slash("imagine", {"prompt": "a cat --ar 0:0"}))
        assert "--ar" in text

        await _admin(world, "config banned-words", {"action": "add", "words": "gore, blood moon"})
        text = await _refused(await fake.slash("imagine", {"prompt": "the Blood Moon rises"}))
        assert "`blood moon`" in text
        # Refused before its picture is fetched: the link leads nowhere, and that is not what is said.
        linked = await fake.slash("imagine", {"prompt": "http://203.0.113.9/x.png a blood moon"})
        await linked.response(timeout=3)
        notice = await linked.wait_original()
        assert "`blood moon`" in notice.content
        assert notice.ephemeral

        other = fake.guild.channel("other")
        await _admin(world, "config channel", {"action": "allow", "channel": other})
        text = await _refused(await fake.slash("imagine", {"prompt": "a cat"}, channel="general"))
        assert f"<#{other.id}>" in text
        assert await _job_count(world) == 0
        assert backend.calls == []

        ok = await fake.slash("imagine", {"prompt": "a cat"}, channel=other)
        assert not (await ok.response(timeout=3)).data.get("flags", 0) & EPHEMERAL


async def test_daily_job_quota_refuses_once_used_up(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    backend = SimulatedBackend(seconds=0.05)
    async with started_bot(fake_discord, make_config(tmp_path), backend) as world:
        fake = fake_discord
        await _admin(world, "quota set", {"target": fake.member.user.id, "jobs_per_day": 1})
        grid = await imagine_grid(world, "a cat")
        await world.jobs.wait_idle()
        text = await _refused(await fake.slash("imagine", {"prompt": "a dog"}))
        assert "1 jobs" in text
        assert "resets <t:" in text
        # Someone else is not limited by that member's rule.
        await imagine_grid(world, "a dog", user=fake.other_member)
        assert await _job_count(world) == 2
        # A button press is a job too, counted against the same quota.
        text = await _refused(await fake.click(grid, grid.custom_ids()[0], user=fake.member))
        assert "quota" in text


async def test_waiting_limit_refuses_and_repeat_posts_one_message_per_job(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    gate = threading.Event()  # held: jobs start but cannot finish until the test lets them
    backend = SimulatedBackend(seconds=0.01, steps=1, gate=gate)
    async with started_bot(fake_discord, make_config(tmp_path), backend) as world:
        fake = fake_discord
        await _admin(world, "quota set", {"target": fake.member.user.id, "max_waiting": 1, "max_running": 1})
        first = await fake.slash("imagine", {"prompt": "one --repeat 2"})
        await first.response(timeout=3)
        text = await _refused(await fake.slash("imagine", {"prompt": "two"}))
        assert "1 jobs waiting" in text
        assert await _job_count(world) == 2
        gate.set()
        await fake.wait_for(
            lambda _: len([m for m in fake.messages_in(fake.channel) if len(m.custom_ids()) == 9]) == 2,
            timeout=10,
            what="two grids, one per --repeat job",
        )


async def test_gpu_minutes_quota_is_measured_from_the_engine_run_time(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    backend = SimulatedBackend(seconds=0.3, steps=3)
    async with started_bot(fake_discord, make_config(tmp_path), backend) as world:
        fake = fake_discord
        await _admin(world, "quota set", {"gpu_minutes_per_day": 0.004})  # 0.24 s, server-wide default
        await imagine_grid(world, "a cat")
        await world.jobs.wait_idle()
        async with world.bot.db.session() as session:
            (entry,) = (await session.scalars(select(UsageEntry))).all()
            (job,) = (await session.scalars(select(Job))).all()
        # The backend's own time for the job (at least its 0.3 s), as the job row records it.
        assert entry.gpu_seconds >= 0.3
        assert entry.gpu_seconds == job.gpu_seconds
        text = await _refused(await fake.slash("imagine", {"prompt": "a dog"}))
        assert "0.004 GPU minutes" in text
        info = await (await fake.slash("info")).response(timeout=3)
        assert "**Jobs today:** 1 of unlimited" in info.data["content"]
        shown = re.search(r"\*\*GPU minutes today:\*\* ([0-9.]+) of 0\.004", info.data["content"])
        assert shown is not None
        assert float(shown[1]) == pytest.approx(entry.gpu_seconds / 60, abs=0.006)
        assert float(shown[1]) > 0


async def test_a_full_queue_refuses_the_whole_prompt_and_queues_nothing(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    gate = threading.Event()
    backend = SimulatedBackend(seconds=0.01, steps=1, gate=gate)
    async with started_bot(fake_discord, make_config(tmp_path), backend) as world:
        fake = fake_discord
        owner = str(fake.member.user.id)
        await _admin(world, "quota set", {"target": fake.member.user.id, "max_waiting": 1, "max_running": 1})
        # Work the database does not know of holds the member's running slot (a queue shared with
        # another process would look like this), so the queue refuses where the policy check passed.
        outside = await world.services.queue.submit(
            owner, GenerationRequest(prompt="elsewhere"), max_running=1
        )
        await fake.wait_for(
            lambda _: world.services.queue.position(outside.job_id) == 0, what="the outside job to run"
        )
        text = await _refused(await fake.slash("imagine", {"prompt": "many --repeat 2"}))
        assert "1 jobs waiting" in text
        async with world.bot.db.session() as session:
            stored = (await session.scalars(select(Job))).all()
        assert sorted(job.status.value for job in stored) == ["cancelled", "failed"]
        # Neither job of the prompt is in the queue; the outside job still runs.
        assert [world.services.queue.position(job.id) for job in stored] == [None, None]
        assert world.services.queue.position(outside.job_id) == 0
        await world.services.queue.cancel(outside.job_id)
        gate.set()
        assert [m for m in fake.messages_in(fake.channel) if not m.ephemeral] == []


async def test_a_member_rule_can_allow_more_waiting_jobs_than_the_default(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    gate = threading.Event()
    backend = SimulatedBackend(seconds=0.01, steps=1, gate=gate)
    config = make_config(tmp_path, max_waiting_per_owner=1, max_running_per_owner=1)
    async with started_bot(fake_discord, config, backend) as world:
        fake = fake_discord
        refused = await _refused(
            await fake.slash("imagine", {"prompt": "a --repeat 3"}, user=fake.other_member)
        )
        assert "1 jobs waiting" in refused
        await _admin(world, "quota set", {"target": fake.member.user.id, "max_waiting": 2})
        accepted = await fake.slash("imagine", {"prompt": "b --repeat 3"})
        assert not (await accepted.response(timeout=3)).data.get("flags", 0) & EPHEMERAL
        async with world.bot.db.session() as session:
            mine = (await session.scalars(select(Job.id).where(Job.user_id == fake.member.user.id))).all()
        assert len(mine) == 3
        assert None not in [world.services.queue.position(job_id) for job_id in mine]  # all three queued
        gate.set()
