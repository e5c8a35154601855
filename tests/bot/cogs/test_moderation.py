"""Moderation end to end: the simulated engine with a test classifier at the safety-check seam
(`IMAGINE_SAFETY_CHECKER=tests.safety_checkers:...`), through the real discord.py client and the fake
Discord. Flagged images are posted only in age-restricted channels, as the server's rule says."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select

from bot.store.models import Job, JobStatus, UsageEntry
from engine.images import read_recipe
from fakediscord import FakeChannel, FakeDiscord, InteractionRecord, MessageRecord
from tests.bot.discord_fixtures import BotWorld, make_config, started_bot

FLAG_EVERYTHING = "tests.safety_checkers:flag_everything"
FLAG_RED = "tests.safety_checkers:flag_red"

NOT_AGE_RESTRICTED = (
    "The safety check flagged what this job made, and flagged images are posted only in age-restricted "
    "channels; nothing was kept."
)
BLOCKED = (
    "The safety check flagged what this job made, and this server blocks flagged images; nothing was kept."
)
PICTURE_FLAGGED = "Your picture was flagged by this server's safety check, so nothing was made from it."


SIMULATED = "simulated:seconds=0.8,steps=8,previews=true"
"""Slow enough for progress edits with previews (unchecked, so shown in age-restricted channels only)."""


def _config(tmp_path: Path, checker: str = FLAG_EVERYTHING, **overrides: Any) -> Any:
    return make_config(tmp_path, safety_checker=checker, model=SIMULATED, **overrides)


async def _set_rule(fake: FakeDiscord, rule: str) -> str:
    answer = await (
        await fake.slash("config moderation", {"flagged_images": rule}, user=fake.admin)
    ).response(timeout=3)
    return str(answer.data["content"])


async def _imagine(
    world: BotWorld, prompt: str, channel: FakeChannel | None = None, **options: Any
) -> tuple[InteractionRecord, MessageRecord, Job]:
    """Run /imagine in `channel` (default #general); wait until its job has ended and been shown."""
    interaction = await world.fake.slash("imagine", {"prompt": prompt, **options}, channel=channel)
    await interaction.response(timeout=3)
    await interaction.wait_original()  # a deferred answer: once the pictures are fetched and jobs queued
    await world.jobs.wait_idle()
    async with world.bot.db.session() as session:
        job = (await session.scalars(select(Job).order_by(Job.created_at.desc()).limit(1))).one()
    message = next(m for m in world.fake.messages_in(channel) if m.id == job.message_id)
    return interaction, message, job


def _no_image_ever_posted(fake: FakeDiscord, channel: FakeChannel | None) -> bool:
    return all(not revision.attachments for m in fake.messages_in(channel) for revision in m.history)


def _saved_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "images").rglob("*.*")) if (tmp_path / "images").exists() else []


def _private_notices(interaction: InteractionRecord) -> list[str]:
    return [m.content for m in interaction.followups() if m.ephemeral]


async def _withheld(world: BotWorld, tmp_path: Path, channel: FakeChannel | None, reason: str) -> None:
    """A flagged grid in `channel`: never posted or saved, the job moderated, its owner told."""
    fake = world.fake
    interaction, message, job = await _imagine(world, "a fox --seed 7", channel)

    assert any(r.content.endswith("%)") for r in message.history), "it showed its progress"
    assert _no_image_ever_posted(fake, channel), "not even a preview"
    assert _saved_files(tmp_path) == []
    assert (
        message.content
        == f"**a fox --seed 7** - <@{fake.member.user.id}> (withheld by this server's moderation: {reason})"
    )
    assert message.custom_ids() == []
    assert (job.status, job.error, job.flagged) == (JobStatus.MODERATED, reason, True)
    assert (job.images, job.grid_path) == ([], None)
    async with world.bot.db.session() as session:
        ledger = (await session.execute(select(func.count()).select_from(UsageEntry))).scalar_one()
    assert ledger == 1, "the GPU ran, so the job counts against the member's quota"
    assert _private_notices(interaction) == [
        f"Your job `{job.id}` was withheld by this server's moderation. {reason}"
    ]

    # Nothing of it can be shown again or built on.
    show = await fake.slash("show", {"job_id": job.id}, channel=channel)
    refusal = await show.response(timeout=3)
    assert refusal.data["flags"] & 64
    assert (
        refusal.data["content"]
        == f"Job `{job.id}` was withheld by this server's moderation; it kept no images."
    )
    history = await (await fake.slash("history")).response(timeout=3)
    assert f"`{job.id}` imagine (moderated): a fox --seed 7" in history.data["content"]


async def test_a_flagged_grid_in_a_normal_channel_is_never_posted_whatever_the_servers_rule(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    async with started_bot(fake_discord, _config(tmp_path), None) as world:
        assert "`allow`" in await _set_rule(fake_discord, "allow")
        await _withheld(world, tmp_path, None, NOT_AGE_RESTRICTED)


async def test_a_flagged_grid_in_an_age_restricted_channel_is_withheld_where_the_server_blocks(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    adults = fake_discord.add_channel("adults-only", nsfw=True)
    async with started_bot(fake_discord, _config(tmp_path), None) as world:
        await _withheld(world, tmp_path, adults, BLOCKED)  # `block` is every server's default


async def test_a_spoiler_server_posts_flagged_grids_blurred_in_age_restricted_channels_only(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    fake = fake_discord
    adults = fake.add_channel("adults-only", nsfw=True)
    async with started_bot(fake, _config(tmp_path), None) as world:
        assert "**Flagged images:** `spoiler`" in await _set_rule(fake, "spoiler")
        _, message, job = await _imagine(world, "a fox --seed 7", adults)

        previews = [r for r in message.history if r.content.endswith("%)") and r.attachments]
        assert previews, "progress previews are shown in age-restricted channels"
        (attachment,) = message.attachments
        assert attachment.filename.startswith("SPOILER_")
        assert attachment.spoiler
        assert len(message.custom_ids()) == 9
        assert (job.status, job.flagged) == (JobStatus.SUCCEEDED, True)
        recipe = read_recipe(attachment.data)
        assert recipe is not None
        assert 'Flagged: "image 1, 2, 3, 4 by flag-everything-test"' in recipe
        history = await (await fake.slash("history")).response(timeout=3)
        assert f"`{job.id}` imagine (flagged): a fox --seed 7" in history.data["content"]

        # /show posts it again behind the spoiler there, and nowhere that is not age-restricted.
        elsewhere = await (await fake.slash("show", {"job_id": job.id})).response(timeout=3)
        assert elsewhere.data["flags"] & 64
        assert "shown only in age-restricted channels" in elsewhere.data["content"]
        assert _no_image_ever_posted(fake, None)
        again = await fake.slash("show", {"job_id": job.id}, channel=adults)
        await again.response(timeout=3)
        reposted = await again.wait_original()
        assert [a.spoiler for a in reposted.attachments] == [True]


async def test_an_allow_server_posts_flagged_grids_plainly_in_age_restricted_channels(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    adults = fake_discord.add_channel("adults-only", nsfw=True)
    async with started_bot(fake_discord, _config(tmp_path), None) as world:
        await _set_rule(fake_discord, "allow")
        _, message, job = await _imagine(world, "a fox --seed 7", adults)

    (attachment,) = message.attachments
    assert not attachment.spoiler
    assert attachment.filename == f"{job.id}.webp"
    grid = Image.open(io.BytesIO(attachment.data))
    pixel = grid.getpixel((10, 10))
    assert isinstance(pixel, tuple)
    colour = (7 * 67 % 256, 7 * 131 % 256, 7 * 197 % 256)
    assert all(abs(a - b) <= 4 for a, b in zip(pixel, colour, strict=True))  # WebP: within a few levels
    assert (job.status, job.flagged) == (JobStatus.SUCCEEDED, True)


@pytest.mark.parametrize(
    ("checker", "line"),
    [
        (FLAG_EVERYTHING, "**Safety check:** `flag-everything-test`"),
        ("model", "**Safety check:** none: the model ships no safety checker"),
        ("none", "**Safety check:** none: turned off by the bot's owner (IMAGINE_SAFETY_CHECKER=none)"),
    ],
)
async def test_config_show_names_the_safety_check_and_the_servers_rule(
    fake_discord: FakeDiscord, tmp_path: Path, checker: str, line: str
) -> None:
    async with started_bot(fake_discord, _config(tmp_path, checker), None):
        answer = await (await fake_discord.slash("config show", user=fake_discord.admin)).response(timeout=3)
    content = answer.data["content"]
    assert line in content.splitlines()
    assert "**Flagged images:** `block`: blocked: never posted, never kept" in content.splitlines()


def _png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(out, format="PNG")
    return out.getvalue()


async def test_a_flagged_picture_makes_nothing_outside_age_restricted_channels(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    fake = fake_discord
    adults = fake.add_channel("adults-only", nsfw=True)
    config = _config(tmp_path, FLAG_RED, fetch_allow_hosts=f"127.0.0.1:{fake.port}")
    async with started_bot(fake, config, None) as world:
        await _set_rule(fake, "spoiler")
        red = fake.upload(_png((250, 0, 0)), "red.png")
        interaction, message, job = await _imagine(world, "a fox --seed 4", None, image=red)
        assert (job.status, job.error) == (JobStatus.MODERATED, PICTURE_FLAGGED)
        assert message.content.endswith(f"(withheld by this server's moderation: {PICTURE_FLAGGED})")
        assert _no_image_ever_posted(fake, None)
        assert _private_notices(interaction)[-1].endswith(PICTURE_FLAGGED)
        async with world.bot.db.session() as session:
            ledger = (await session.execute(select(func.count()).select_from(UsageEntry))).scalar_one()
        assert ledger == 0, "nothing ran"

        # Where the server's rule lets flagged images be posted, the picture is used; its grid is
        # checked as any other (seeds 4-7 paint cells 3 and 4 over the red threshold).
        _, posted, _ = await _imagine(world, "a fox --seed 4", adults, image=red)
        assert [a.spoiler for a in posted.attachments] == [True]
