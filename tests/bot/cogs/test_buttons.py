"""U, V, Vary, 🔄 and remix through the real client: each press is a new job with its own message."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from bot.store.models import Job, JobKind, JobStatus
from engine.simulated import SimulatedBackend
from engine.types import VARY_STRONG, VARY_SUBTLE, Mode
from fakediscord import FakeDiscord
from tests.bot.discord_fixtures import custom_id, imagine_grid, make_config, started_bot


async def _job(world_db: object, job_id: str) -> Job:
    async with world_db.session() as session:  # type: ignore[attr-defined]
        job = await session.get(Job, job_id)
        assert job is not None
        return job


async def test_u_v_vary_and_reroll_each_answer_with_a_new_message(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    backend = SimulatedBackend(seconds=0.2, steps=2)
    async with started_bot(fake_discord, make_config(tmp_path), backend) as world:
        fake, user = fake_discord, fake_discord.member
        grid = await imagine_grid(world, "a lighthouse --seed 100")
        grid_job = custom_id(grid, "U1").split(":")[2]
        revisions = len(grid.history)

        # U2: the upscaled cell, mentioning the user, its tools and a link back to the grid.
        click = await fake.click(grid, custom_id(grid, "U2"), user=user)
        await click.response(timeout=3)
        upscale = await fake.wait_for_message(
            lambda m: (
                m.content == f"**a lighthouse --seed 100** - Image #2 <@{user.user.id}>"
                and bool(m.attachments)
            ),
            timeout=10,
        )
        labels = upscale.button_labels()
        assert labels[:5] == [
            "Upscale (Subtle)",
            "Upscale (Creative)",
            "Vary (Subtle)",
            "Vary (Strong)",
            "Vary (Region)",
        ]
        assert labels[-1] == "Web"
        link = upscale.buttons()[-1]["url"]
        assert link == f"https://discord.com/channels/{fake.guild.id}/{fake.channel.id}/{grid.id}"
        await world.jobs.wait_idle()
        assert backend.calls[-1].mode is Mode.UPSCALE
        assert backend.calls[-1].seed == 101  # cell 2 of a grid seeded 100
        assert backend.calls[-1].init_image is not None
        assert backend.calls[-1].init_image.name.endswith("-2.png")

        # V3: a variation grid of cell 3.
        click = await fake.click(grid, custom_id(grid, "V3"), user=user)
        await click.response(timeout=3)
        variation = await fake.wait_for_message(
            lambda m: (
                m.content == f"**a lighthouse --seed 100** - Variations (Strong) by <@{user.user.id}>"
                and len(m.custom_ids()) == 9
            ),
            timeout=10,
        )
        await world.jobs.wait_idle()
        call = backend.calls[-1]
        assert (call.mode, call.strength, call.count) == (Mode.VARIATION, VARY_STRONG, 4)
        assert call.init_image is not None
        assert call.init_image.name.endswith("-3.png")

        # Vary (Subtle) on the upscale: a subtle variation of the cell the upscale came from.
        click = await fake.click(upscale, custom_id(upscale, "Vary (Subtle)"), user=user)
        await click.response(timeout=3)
        await fake.wait_for_message(lambda m: "Variations (Subtle)" in m.content and len(m.custom_ids()) == 9)
        await world.jobs.wait_idle()
        assert (backend.calls[-1].strength, backend.calls[-1].init_image.name[-6:]) == (VARY_SUBTLE, "-2.png")  # type: ignore[union-attr]

        # 🔄: the same prompt again with a new seed, as a new grid.
        click = await fake.click(grid, custom_id(grid, "🔄"), user=user)
        await click.response(timeout=3)
        rerolled = await click.wait_original()
        await fake.wait_for(lambda _: len(rerolled.custom_ids()) == 9, timeout=10, what="the re-rolled grid")
        await world.jobs.wait_idle()
        reroll = backend.calls[-1]
        assert (reroll.mode, reroll.prompt) == (Mode.TEXT, "a lighthouse")
        assert reroll.seed != 100

        # The clicked grid itself never changed; every press is a job recorded with its parent.
        assert len(grid.history) == revisions
        async with world.bot.db.session() as session:
            children = (await session.scalars(select(Job).where(Job.parent_id == grid_job))).all()
        kinds = sorted((job.kind.value, job.parent_index) for job in children)
        assert kinds == [("reroll", None), ("upscale", 2), ("variation", 2), ("variation", 3)]
        assert all(job.status is JobStatus.SUCCEEDED for job in children)
        assert variation.attachments


async def test_anyone_may_press_by_default_and_owner_only_is_a_guild_setting(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    async with started_bot(fake_discord, make_config(tmp_path), SimulatedBackend(seconds=0.05)) as world:
        fake = fake_discord
        grid = await imagine_grid(world, "a cat")

        # Another member's press makes a job that belongs to them.
        click = await fake.click(grid, custom_id(grid, "V1"), user=fake.other_member)
        await click.response(timeout=3)
        message = await fake.wait_for_message(
            lambda m: f"by <@{fake.other_member.user.id}>" in m.content and len(m.custom_ids()) == 9,
            timeout=10,
        )
        assert message.content.startswith("**a cat** - Variations")

        admin_set = await fake.slash("config buttons", {"owner_only": True}, user=fake.admin)
        assert (await admin_set.response(timeout=3)).data["flags"] & 64

        refused = await fake.click(grid, custom_id(grid, "V2"), user=fake.other_member)
        answer = await refused.response(timeout=3)
        assert answer.data["flags"] & 64
        assert f"only <@{fake.member.user.id}>" in answer.data["content"]
        async with world.bot.db.session() as session:
            jobs = (await session.scalars(select(Job).where(Job.user_id == fake.other_member.user.id))).all()
        assert [job.kind for job in jobs] == [JobKind.VARIATION]

        # The owner still may.
        mine = await fake.click(grid, custom_id(grid, "V2"), user=fake.member)
        assert not (await mine.response(timeout=3)).data.get("flags", 0) & 64


async def test_remix_mode_opens_a_modal_to_edit_the_prompt(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    backend = SimulatedBackend(seconds=0.05)
    async with started_bot(fake_discord, make_config(tmp_path), backend) as world:
        fake, user = fake_discord, fake_discord.member
        grid = await imagine_grid(world, "a red barn --seed 5")

        panel_cmd = await fake.slash("settings", user=user)
        await panel_cmd.response(timeout=3)
        panel = await panel_cmd.wait_original()
        assert panel.ephemeral
        toggled = await fake.click(panel, "ibset:remix:on", user=user)
        await toggled.response(timeout=3)
        assert "Remix mode: on" in (await toggled.wait_original()).content

        opened = await fake.click(grid, custom_id(grid, "V4"), user=user)
        await opened.response(timeout=3)
        modal = opened.modal
        assert modal is not None
        field = modal["components"][0]["components"][0]
        assert field["value"] == "a red barn --seed 5"

        new_text = {field["custom_id"]: "a blue barn --seed 5"}
        submitted = await fake.submit_modal(opened, values=new_text, user=user)
        await submitted.response(timeout=3)
        await fake.wait_for_message(
            lambda m: (
                m.content.startswith("**a blue barn --seed 5** - Variations") and len(m.custom_ids()) == 9
            ),
            timeout=10,
        )
        await world.jobs.wait_idle()
        call = backend.calls[-1]
        assert (call.prompt, call.mode) == ("a blue barn", Mode.VARIATION)
        assert call.init_image is not None
        assert call.init_image.name.endswith("-4.png")
