"""The bot on the OpenAI engine, end to end: the real discord.py client against the loopback fake
Discord, the real `openai` client against the loopback fake Images API. /imagine → previews → grid,
U (local), V (edits endpoint), 🔄; refused parameters, a refused prompt, the ledger and the image quota."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from bot.config import load_config
from bot.services import load_engine
from bot.store.models import Job, JobStatus, UsageEntry
from fakediscord import FakeDiscord, MessageRecord
from tests.bot.discord_fixtures import BotWorld, custom_id, imagine_grid, make_config, started_bot
from tests.fakeopenai import REFUSED_WORD, FakeImagesAPI, fake_images_api

KEY = "sk-test-key"
MODEL = "openai:gpt-image-1"
EDIT_TOOLS = {"Vary (Region)", "Zoom Out 2x", "Zoom Out 1.5x", "Custom Zoom", "Make Square"}


@pytest.fixture
async def api(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeImagesAPI]:
    async with fake_images_api(api_key=KEY, partial_delay_s=0.25) as fake:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        yield fake
        assert fake.violations == []


def _image(message: MessageRecord) -> Image.Image:
    with Image.open(io.BytesIO(message.attachments[0].data)) as opened:
        return opened.convert("RGB")


async def _jobs(world: BotWorld) -> list[Job]:
    async with world.bot.db.session() as session:
        return list((await session.scalars(select(Job).order_by(Job.created_at))).all())


async def test_grid_with_previews_then_u_v_and_reroll(
    fake_discord: FakeDiscord, tmp_path: Path, api: FakeImagesAPI
) -> None:
    # No backend given: the bot loads IMAGINE_MODEL through the engine registry, as `imaginebot run` does.
    async with started_bot(fake_discord, make_config(tmp_path, model=MODEL), None) as world:
        fake, user = fake_discord, fake_discord.member
        grid = await imagine_grid(world, "a lighthouse at dusk --ar 16:9", wait_s=30)
        assert grid.content == f"**a lighthouse at dusk --aspect 16:9** - <@{user.user.id}>"
        assert any(r.attachments and r.content.endswith("%)") for r in grid.history), "a streamed preview"
        picture = _image(grid)
        assert picture.width * 9 == picture.height * 16, "the grid keeps the prompt's 16:9"
        (first,) = api.image_requests()
        assert (first.endpoint, first.params["size"], first.params["n"]) == ("generations", "1536x1024", 4)

        # U3: a local 2x resample of cell 3; no API call, and no editing tools the engine can't serve.
        click = await fake.click(grid, custom_id(grid, "U3"), user=user)
        await click.response(timeout=3)
        upscale = await fake.wait_for_message(
            lambda m: "Image #3" in m.content and bool(m.attachments), timeout=20
        )
        # Cells are 1536x1024 cropped to 1536x864: the 3072x1728 grid is posted halved (engine.images.
        # POSTED_GRID_MAX_SIDE), and the upscale is the cell at 2x, posted whole.
        assert (picture.width, picture.height) == (1536, 864)
        assert _image(upscale).size == (3072, 1728)
        assert not EDIT_TOOLS & set(upscale.button_labels())
        assert {"Upscale (Subtle)", "Vary (Subtle)", "Vary (Strong)"} <= set(upscale.button_labels())
        assert len(api.image_requests()) == 1

        # V2: the edits endpoint with cell 2 as the picture.
        click = await fake.click(grid, custom_id(grid, "V2"), user=user)
        await click.response(timeout=3)
        await fake.wait_for_message(
            lambda m: "Variations (Strong)" in m.content and len(m.custom_ids()) == 9, timeout=30
        )
        edit = api.image_requests()[-1]
        assert edit.endpoint == "edits"
        assert edit.params["size"] == "1536x1024"
        grid_job = (await _jobs(world))[0]
        kept = next(image for image in grid_job.images if image.index == 2)
        with Image.open(world.config.data_dir / kept.path) as opened:
            cell_two = opened.convert("RGB")
        assert edit.images[0].size == cell_two.size == (1536, 864)  # the full cell, not the posted grid's
        assert edit.images[0].tobytes() == cell_two.tobytes()

        # 🔄: a new grid from a new generations call.
        click = await fake.click(grid, custom_id(grid, "🔄"), user=user)
        await click.response(timeout=3)
        rerolled = await click.wait_original()
        await fake.wait_for(lambda _: len(rerolled.custom_ids()) == 9, timeout=30, what="the re-rolled grid")
        await world.jobs.wait_idle()
        assert [r.endpoint for r in api.image_requests()] == ["generations", "edits", "generations"]

        jobs = await _jobs(world)
        assert all(job.status is JobStatus.SUCCEEDED for job in jobs)
        async with world.bot.db.session() as session:
            ledger = (await session.scalars(select(UsageEntry).order_by(UsageEntry.at))).all()
        # The upscale was resampled here: an image made, none billed.
        assert [(entry.images, entry.hosted) for entry in ledger] == [
            (4, True),
            (1, False),
            (4, True),
            (4, True),
        ]
        assert all(entry.gpu_seconds > 0 for entry in ledger)


async def test_parameters_the_engine_cannot_honour_are_refused_before_queuing(
    fake_discord: FakeDiscord, tmp_path: Path, api: FakeImagesAPI
) -> None:
    async with started_bot(fake_discord, make_config(tmp_path, model=MODEL), None) as world:
        fake = fake_discord
        refused = await fake.slash("imagine", {"prompt": "a cat --seed 5"})
        answer = await refused.response(timeout=3)
        assert answer.data["flags"] & 64
        assert answer.data["content"] == "OpenAI gpt-image-1 can't honour `--seed`; remove it."
        refused = await fake.slash("imagine", {"prompt": "a cat --no dogs --chaos 20 --ar 3:2"})
        answer = await refused.response(timeout=3)
        assert answer.data["content"] == "OpenAI gpt-image-1 can't honour `--no` or `--chaos`; remove them."
        assert await _jobs(world) == []
        assert api.image_requests() == []


async def test_a_refused_prompt_tells_its_owner_the_engines_reason_privately(
    fake_discord: FakeDiscord, tmp_path: Path, api: FakeImagesAPI
) -> None:
    async with started_bot(fake_discord, make_config(tmp_path, model=MODEL), None) as world:
        fake = fake_discord
        interaction = await fake.slash("imagine", {"prompt": f"a {REFUSED_WORD} thing"})
        await interaction.response(timeout=3)
        message = await interaction.wait_original(lambda m: "failed" in m.content)
        await world.jobs.wait_idle()
        assert message.content.endswith("(failed: OpenAI gpt-image-1 refused this prompt)")
        (job,) = await _jobs(world)
        notices = [m.content for m in interaction.followups() if m.ephemeral]
        assert notices == [
            f"Your job `{job.id}` was refused by OpenAI gpt-image-1: Your request was rejected by the safety "
            "system. Your request may contain content that is not allowed by our safety system."
        ]
        assert job.status is JobStatus.FAILED


async def test_quota_caps_hosted_images_per_day(
    fake_discord: FakeDiscord, tmp_path: Path, api: FakeImagesAPI
) -> None:
    async with started_bot(fake_discord, make_config(tmp_path, model=MODEL), None) as world:
        fake = fake_discord
        set_rule = await fake.slash("quota set", {"images_per_day": 6}, user=fake.admin)
        assert "hosted images/day 6" in (await set_rule.response(timeout=3)).data["content"]
        await imagine_grid(world, "first", wait_s=30)
        await world.jobs.wait_idle()
        refused = await fake.slash("imagine", {"prompt": "second"})
        answer = await refused.response(timeout=3)
        assert answer.data["flags"] & 64
        assert answer.data["content"].startswith("You have used today's 6 hosted-engine images;")
        assert len(api.image_requests()) == 1


async def test_the_key_and_base_url_may_come_from_the_bots_dotenv(
    tmp_path: Path, api: FakeImagesAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        f"IMAGINE_MODEL={MODEL}\nOPENAI_API_KEY={KEY}\nOPENAI_BASE_URL={api.base_url}\nIMAGINE_HOSTED_RETRIES=0\n"
    )
    config = load_config()
    assert "sk-test" not in repr(config)  # a secret, kept out of logs
    backend = await asyncio.to_thread(load_engine, config)
    try:
        assert backend.capabilities.engine == "OpenAI gpt-image-1"
    finally:
        await asyncio.to_thread(backend.close)
    assert [r.endpoint for r in api.requests] == ["models"]


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), colour).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_image_prompts_and_blend_go_through_the_edits_endpoint(
    fake_discord: FakeDiscord, tmp_path: Path, api: FakeImagesAPI
) -> None:
    fake = fake_discord
    config = make_config(tmp_path, model=MODEL, fetch_allow_hosts=f"127.0.0.1:{fake.port}")
    red, blue = fake.upload(_png((220, 20, 20)), "red.png"), fake.upload(_png((20, 20, 220)), "blue.png")
    async with started_bot(fake, config, None) as world:
        before = {m.id for m in fake.messages_in(fake.channel)}
        started = await fake.slash("imagine", {"prompt": "a red kite --ar 3:2", "image": red})
        await started.response(timeout=3)
        await fake.wait_for_message(lambda m: m.id not in before and len(m.custom_ids()) == 9, timeout=30)
        await world.jobs.wait_idle()
        (call,) = api.image_requests()
        assert (call.endpoint, call.params["size"], call.params["prompt"]) == (
            "edits",
            "1536x1024",
            "a red kite",
        )
        start = call.images[0]
        assert start.width / start.height == pytest.approx(3 / 2, abs=0.01)  # fitted to --ar 3:2 by the bot
        assert start.getpixel((start.width // 2, start.height // 2))[0] > 150  # the red picture

        # /blend: no --iw for an engine that can't weigh pictures; the blend is the edit's input.
        before = {m.id for m in fake.messages_in(fake.channel)}
        started = await fake.slash("blend", {"image1": red, "image2": blue, "dimensions": "portrait"})
        await started.response(timeout=3)
        await fake.wait_for_message(lambda m: m.id not in before and len(m.custom_ids()) == 9, timeout=30)
        await world.jobs.wait_idle()
        blend = api.image_requests()[-1]
        assert (blend.endpoint, blend.params["size"]) == ("edits", "1024x1536")
        # The API requires a prompt; a blend has no words, so the engine says what to do with the picture.
        assert blend.params["prompt"] == "An image made from this picture: its subject, palette and layout."
