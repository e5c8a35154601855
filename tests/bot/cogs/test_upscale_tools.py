"""The buttons under an upscale, through the real client: Upscale (Subtle/Creative), Vary (Region), Zoom Out,
Custom Zoom, the pans and Make Square. Each press is a new job with its own message, its parent and cell
recorded; the buttons survive a restart; remix, quotas, `IMAGINE_MAX_SIDE` and an engine that cannot paint
are honoured."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from bot.errors import BotError
from bot.jobs import ButtonAction, Requester
from bot.store.models import Image, Job, JobKind, JobStatus
from engine.simulated import SimulatedBackend
from engine.types import UPSCALE_CREATIVE, UPSCALE_SUBTLE, GenerationRequest, Mode
from fakediscord import FakeDiscord, InteractionRecord, MessageRecord
from tests.bot.discord_fixtures import BotWorld, custom_id, imagine_grid, make_config, started_bot

EPHEMERAL = 64

EVERY_TOOL = [
    "Upscale (Subtle)",
    "Upscale (Creative)",
    "Vary (Subtle)",
    "Vary (Strong)",
    "Vary (Region)",
    "Zoom Out 2x",
    "Zoom Out 1.5x",
    "Custom Zoom",
    "Make Square",
    "",  # ⬅️ ➡️ ⬆️ ⬇️ carry only their emoji
    "",
    "",
    "",
    "Web",
]
PANS = {"⬅️": "left", "➡️": "right", "⬆️": "up", "⬇️": "down"}


def _is_grid(message: MessageRecord) -> bool:
    return len(message.custom_ids()) == 9 and bool(message.attachments)


def _is_upscale(message: MessageRecord) -> bool:
    return "Upscale (Subtle)" in message.button_labels() and bool(message.attachments)


async def _upscale(world: BotWorld, grid: MessageRecord, cell: int = 1) -> MessageRecord:
    """Press U`cell` and wait for the upscale's message."""
    press = await world.fake.click(grid, custom_id(grid, f"U{cell}"))
    await press.response(timeout=3)
    message = await press.wait_original()
    await world.fake.wait_for(lambda _: _is_upscale(message), timeout=10, what="the upscale")
    return message


async def _result(
    world: BotWorld, interaction: InteractionRecord, done: Callable[[MessageRecord], bool] = _is_grid
) -> MessageRecord:
    """The message that answers `interaction` (public), once it shows the job's result."""
    answer = await interaction.response(timeout=3)
    assert not answer.data.get("flags", 0) & EPHEMERAL, answer.data.get("content")
    message = await interaction.wait_original()
    await world.fake.wait_for(lambda _: done(message), timeout=10, what=f"the result of {interaction}")
    await world.jobs.wait_idle()
    return message


async def _refusal(interaction: InteractionRecord) -> str:
    """The one ephemeral answer to `interaction`."""
    answer = await interaction.response(timeout=3)
    assert answer.data.get("flags", 0) & EPHEMERAL, answer.data
    assert interaction.modal is None
    return str(answer.data["content"])


async def _job_id(message: MessageRecord) -> str:
    return message.custom_ids()[0].split(":")[2]


async def _jobs(world: BotWorld, **where: Any) -> list[Job]:
    async with world.bot.db.session() as session:
        query = select(Job).filter_by(**where).order_by(Job.created_at)
        return list((await session.scalars(query)).all())


async def _image_path(world: BotWorld, job_id: str, index: int) -> Path:
    async with world.bot.db.session() as session:
        path = await session.scalar(select(Image.path).where(Image.job_id == job_id, Image.index == index))
    assert path is not None
    return world.config.data_dir / path


async def _remix_on(world: BotWorld) -> None:
    panel_cmd = await world.fake.slash("settings", user=world.fake.member)
    await panel_cmd.response(timeout=3)
    toggled = await world.fake.click(await panel_cmd.wait_original(), "ibset:remix:on")
    await toggled.response(timeout=3)


def _select(message: MessageRecord) -> dict[str, Any]:
    """The one select menu on `message`."""
    (select_menu,) = [c for row in message.components for c in row["components"] if c["type"] == 3]
    return dict(select_menu)


def _modal_field(interaction: InteractionRecord) -> dict[str, Any]:
    modal = interaction.modal
    assert modal is not None, f"{interaction} opened no modal"
    field: dict[str, Any] = modal["components"][0]["components"][0]
    return field


# --- every button, on a message posted before a restart ------------------------------------------


async def test_every_tool_under_an_upscale_works_after_a_restart(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    fake, user = fake_discord, fake_discord.member
    config = make_config(tmp_path)
    async with started_bot(fake, config, SimulatedBackend(seconds=0.02, steps=1)) as world:
        grid = await imagine_grid(world, "a harbour --ar 3:2 --seed 7")
        upscale = await _upscale(world, grid, cell=3)
        # Midjourney's buttons, in its rows; the 3:2 image is not square, so Make Square is there.
        assert upscale.button_labels() == EVERY_TOOL
        assert [b.get("emoji", {}).get("name") for b in upscale.buttons()[9:13]] == list(PANS)
        rows = [len(row["components"]) for row in upscale.components]
        assert rows == [2, 3, 4, 4, 1]
        # Vary (Region) answers privately with its picker, left open across the restart.
        opened = await fake.click(upscale, custom_id(upscale, "Vary (Region)"))
        assert (await opened.response(timeout=3)).data["flags"] & EPHEMERAL
        picker = await opened.wait_original()
        upscale_job = await _job_id(upscale)
        source = await _image_path(world, upscale_job, 1)
        with PILImage.open(source) as opened:
            source_size = opened.size

    backend = SimulatedBackend(seconds=0.02, steps=1)
    async with started_bot(fake, config, backend) as world:
        prompt, mention = "**a harbour --aspect 3:2 --seed 7**", f"<@{user.user.id}>"
        results: dict[str, GenerationRequest] = {}
        cells: dict[str, tuple[int, int]] = {}

        async def press(label: str, head: str, done: Callable[[MessageRecord], bool] = _is_grid) -> None:
            message = await _result(world, await fake.click(upscale, custom_id(upscale, label)), done)
            assert message.content == f"{prompt} - {head} by {mention}", label
            results[label] = backend.calls[-1]
            with PILImage.open(io.BytesIO(message.attachments[0].data)) as posted:
                cells[label] = (posted.width // 2, posted.height // 2)

        for emoji, direction in PANS.items():
            await press(emoji, f"Pan {direction.capitalize()}")
            assert results[emoji].edit == f"pan {direction}"
        await press("Zoom Out 2x", "Zoom Out")
        await press("Zoom Out 1.5x", "Zoom Out")
        await press("Make Square", "Make Square")
        # The grids show the new canvases: the source's 64×40 grown one way, kept, or made square.
        assert source_size == (64, 40)
        assert all(cells[pan][0] > 64 and cells[pan][1] == 40 for pan in ("⬅️", "➡️")), cells
        assert all(cells[pan] == (64, cells[pan][1]) and cells[pan][1] > 40 for pan in ("⬆️", "⬇️")), cells
        assert (cells["Zoom Out 2x"], cells["Make Square"]) == ((64, 40), (64, 64))
        await press("Upscale (Subtle)", "Upscaled (Subtle)", _is_upscale)
        await press("Upscale (Creative)", "Upscaled (Creative)", _is_upscale)

        # Custom Zoom: its box holds the prompt and `--zoom 2`; the member makes it 1.5.
        zoom = await fake.click(upscale, custom_id(upscale, "Custom Zoom"))
        await zoom.response(timeout=3)
        field = _modal_field(zoom)
        assert field["value"] == "a harbour --aspect 3:2 --seed 7 --zoom 2"
        submitted = await fake.submit_modal(
            zoom, values={field["custom_id"]: "a harbour at night --zoom 1.5"}
        )
        message = await _result(world, submitted)
        assert message.content == f"**a harbour at night** - Zoom Out by {mention}"
        results["Custom Zoom"] = backend.calls[-1]

        # Vary (Region) through the picker the previous run posted: two cells, the prompt left blank.
        assert _select(picker)["custom_id"] == f"ibregion:{upscale_job}:1"
        chosen = await fake.click(picker, _select(picker)["custom_id"], values=["1", "5"])
        await chosen.response(timeout=3)
        field = _modal_field(chosen)
        assert field["value"] == "a harbour --aspect 3:2 --seed 7"
        message = await _result(world, await fake.submit_modal(chosen, values={field["custom_id"]: ""}))
        assert message.content == f"{prompt} - Vary (Region) by {mention}"
        results["Vary (Region)"] = backend.calls[-1]

        # And a fresh press of the old Vary (Region), with a new prompt for the one cell.
        opened = await fake.click(upscale, custom_id(upscale, "Vary (Region)"))
        await opened.response(timeout=3)
        new_picker = await opened.wait_original()
        names = [option["label"] for option in _select(new_picker)["options"]]
        assert names[:4] == ["Top left", "Top", "Top right", "Left"]
        assert (len(names), _select(new_picker)["min_values"], _select(new_picker)["max_values"]) == (9, 1, 9)
        chosen = await fake.click(new_picker, _select(new_picker)["custom_id"], values=["9"])
        await chosen.response(timeout=3)
        field = _modal_field(chosen)
        message = await _result(
            world, await fake.submit_modal(chosen, values={field["custom_id"]: "a red boat"})
        )
        assert message.content == f"**a red boat** - Vary (Region) by {mention}"
        results["Vary (Region) 9"] = backend.calls[-1]

        # What each asked the engine: the upscaled image, the operation, its parent and cell, the cap.
        for label, call in results.items():
            assert call.init_image == source, label
            assert call.parent == f"{upscale_job}#1", label
            assert call.max_side == world.config.max_side, label
        expected = {
            "Zoom Out 2x": (Mode.EDIT, "zoom 2"),
            "Zoom Out 1.5x": (Mode.EDIT, "zoom 1.5"),
            "Custom Zoom": (Mode.EDIT, "zoom 1.5"),
            "Make Square": (Mode.EDIT, "square"),
            "Vary (Region)": (Mode.EDIT, "region 1 5"),
            "Vary (Region) 9": (Mode.EDIT, "region 9"),
            "Upscale (Subtle)": (Mode.UPSCALE, ""),
            "Upscale (Creative)": (Mode.UPSCALE, ""),
        }
        for label, (mode, edit) in expected.items():
            assert (results[label].mode, results[label].edit) == (mode, edit), label
        assert all(
            results[label].count == 4 for label in [*PANS, "Zoom Out 2x", "Make Square", "Vary (Region)"]
        )
        assert results["Upscale (Subtle)"].strength == UPSCALE_SUBTLE
        assert results["Upscale (Creative)"].strength == UPSCALE_CREATIVE
        assert results["Vary (Region) 9"].prompt == "a red boat"
        assert results["Custom Zoom"].prompt == "a harbour at night"

        # Every press is a job recorded with the upscale as its parent, cell 1 (its one image).
        children = await _jobs(world, parent_id=upscale_job)
        kinds = sorted(job.kind.value for job in children)
        assert kinds == sorted(["pan"] * 4 + ["zoom"] * 3 + ["square"] + ["region"] * 2 + ["upscale"] * 2)
        assert {job.parent_index for job in children} == {1}
        assert all(job.status is JobStatus.SUCCEEDED for job in children)


# --- remix, Custom Zoom's box, /imagine ----------------------------------------------------------


async def test_remix_mode_asks_for_the_prompt_of_the_new_area(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    backend = SimulatedBackend(seconds=0.02, steps=1)
    async with started_bot(fake_discord, make_config(tmp_path), backend) as world:
        fake = fake_discord
        upscale = await _upscale(world, await imagine_grid(world, "a quiet lake --seed 4"))
        await _remix_on(world)

        for label, edit in (("Zoom Out 2x", "zoom 2"), ("⬅️", "pan left")):
            opened = await fake.click(upscale, custom_id(upscale, label))
            await opened.response(timeout=3)
            field = _modal_field(opened)
            assert field["value"] == "a quiet lake --seed 4", label
            text = {field["custom_id"]: f"a quiet lake with {edit} --seed 4"}
            message = await _result(world, await fake.submit_modal(opened, values=text))
            assert message.content.startswith(f"**a quiet lake with {edit} --seed 4** - ")
            call = backend.calls[-1]
            assert (call.mode, call.edit, call.prompt) == (Mode.EDIT, edit, f"a quiet lake with {edit}")

        # Upscale (Subtle) takes no prompt, remix or not.
        second = await fake.click(upscale, custom_id(upscale, "Upscale (Subtle)"))
        await _result(world, second, _is_upscale)
        assert second.modal is None
        assert backend.calls[-1].prompt == "a quiet lake"


async def test_custom_zoom_box_takes_zoom_above_1_and_at_most_2(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    backend = SimulatedBackend(seconds=0.02, steps=1)
    async with started_bot(fake_discord, make_config(tmp_path), backend) as world:
        fake = fake_discord
        upscale = await _upscale(world, await imagine_grid(world, "a windmill"))
        before = len(await _jobs(world))
        for text, says in (
            ("a windmill --zoom 3", "`--zoom` takes a number above 1 and at most 2"),
            ("a windmill --zoom 1", "`--zoom` takes a number above 1 and at most 2"),
            ("a windmill --zoom far", "got `far`"),
            ("a windmill", "Custom Zoom needs `--zoom`"),
            ("a windmill --zoom 2 --zoom 1.5", "given twice"),
            ("a windmill --zoom 1.5 --ar 0:0", "`--ar` takes two whole numbers"),
        ):
            opened = await fake.click(upscale, custom_id(upscale, "Custom Zoom"))
            await opened.response(timeout=3)
            field = _modal_field(opened)
            refused = await _refusal(await fake.submit_modal(opened, values={field["custom_id"]: text}))
            assert says in refused, (text, refused)
        assert len(await _jobs(world)) == before

        opened = await fake.click(upscale, custom_id(upscale, "Custom Zoom"))
        await opened.response(timeout=3)
        field = _modal_field(opened)
        await _result(
            world, await fake.submit_modal(opened, values={field["custom_id"]: "a windmill —zoom 1.25"})
        )
        assert (backend.calls[-1].edit, backend.calls[-1].prompt) == ("zoom 1.25", "a windmill")

        # `--zoom` belongs to Custom Zoom alone.
        refused = await _refusal(await fake.slash("imagine", {"prompt": "a windmill --zoom 2"}))
        assert "`--zoom` only works in the Custom Zoom box" in refused


# --- what is shown, and what is refused -------------------------------------------------------------


async def test_make_square_is_offered_only_under_an_upscale_that_is_not_square(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    async with started_bot(fake_discord, make_config(tmp_path), SimulatedBackend(seconds=0.02)) as world:
        fake = fake_discord
        square = await _upscale(world, await imagine_grid(world, "a square tile"))
        assert "Make Square" not in square.button_labels()
        assert "Zoom Out 2x" in square.button_labels()
        tall = await _upscale(world, await imagine_grid(world, "a tall tower --ar 2:3"))
        assert "Make Square" in tall.button_labels()

        # /show posts them again with the same buttons (sizes from the images table).
        for message in (square, tall):
            shown = await fake.slash("show", {"job_id": await _job_id(message)})
            await shown.response(timeout=3)
            again = await shown.wait_original()
            assert again.button_labels() == message.button_labels()

        # A forged or stale Make Square on a square image is refused by the service too.
        who = Requester(user_id=fake.member.user.id, guild_id=fake.guild.id, channel_id=fake.channel.id)
        with pytest.raises(BotError, match="already square"):
            await world.jobs.press(who, ButtonAction.MAKE_SQUARE, await _job_id(square), 1)


async def test_a_result_past_max_side_is_refused_before_it_is_queued(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    backend = SimulatedBackend(seconds=0.02, steps=1)  # its images are 64 px on the long side
    async with started_bot(fake_discord, make_config(tmp_path, max_side=64), backend) as world:
        fake = fake_discord
        upscale = await _upscale(world, await imagine_grid(world, "a lantern"))
        before = len(await _jobs(world))

        refused = await _refusal(await fake.click(upscale, custom_id(upscale, "Upscale (Creative)")))
        assert "128×128 pixels" in refused
        assert "64 pixels" in refused
        assert "IMAGINE_MAX_SIDE" in refused
        refused = await _refusal(await fake.click(upscale, custom_id(upscale, "⬇️")))
        assert "cannot pan down" in refused
        assert len(await _jobs(world)) == before

        # What keeps the size is still allowed.
        await _result(world, await fake.click(upscale, custom_id(upscale, "Zoom Out 2x")))
        assert backend.calls[-1].max_side == 64


async def test_an_engine_that_cannot_paint_hides_the_tools_and_refuses_old_ones_once(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    fake = fake_discord
    config = make_config(tmp_path)
    async with started_bot(fake, config, SimulatedBackend(seconds=0.02)) as world:
        grid = await imagine_grid(world, "a bridge --ar 16:9")
        old = await _upscale(world, grid)
        opened = await fake.click(old, custom_id(old, "Vary (Region)"))
        await opened.response(timeout=3)
        picker = await opened.wait_original()

    backend = SimulatedBackend(seconds=0.02, edits=False)
    async with started_bot(fake, config, backend) as world:
        new = await _upscale(world, grid, cell=2)
        assert new.button_labels() == [
            "Upscale (Subtle)",
            "Upscale (Creative)",
            "Vary (Subtle)",
            "Vary (Strong)",
            "Web",
        ]
        before, calls = len(await _jobs(world)), len(backend.calls)
        public = [m.id for m in fake.messages_in(fake.channel) if not m.ephemeral]
        for label in ("Zoom Out 2x", "Custom Zoom", "⬅️", "Make Square", "Vary (Region)"):
            press = await fake.click(old, custom_id(old, label))
            refused = await _refusal(press)
            assert "cannot paint new areas" in refused, label
            assert len(press.callbacks) == 1
            assert press.followups() == []
        chosen = await fake.click(picker, _select(picker)["custom_id"], values=["5"])
        assert "cannot paint new areas" in await _refusal(chosen)
        await world.jobs.wait_idle()
        assert len(await _jobs(world)) == before
        assert len(backend.calls) == calls
        assert [m.id for m in fake.messages_in(fake.channel) if not m.ephemeral] == public

        # What needs no painting still works on the old message.
        await _result(world, await fake.click(old, custom_id(old, "Upscale (Subtle)")), _is_upscale)
        assert backend.calls[-1].mode is Mode.UPSCALE


async def test_the_new_jobs_count_against_the_daily_quota(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    async with started_bot(fake_discord, make_config(tmp_path), SimulatedBackend(seconds=0.02)) as world:
        fake = fake_discord
        admin = await fake.slash(
            "quota set", {"target": fake.member.user.id, "jobs_per_day": 3}, user=fake.admin
        )
        await admin.response(timeout=3)
        upscale = await _upscale(world, await imagine_grid(world, "a kite"))
        await _result(world, await fake.click(upscale, custom_id(upscale, "Zoom Out 1.5x")))
        for label in ("➡️", "Upscale (Subtle)"):
            refused = await _refusal(await fake.click(upscale, custom_id(upscale, label)))
            assert "quota" in refused, label
        assert len(await _jobs(world, user_id=fake.member.user.id)) == 3


async def test_vary_under_a_second_upscale_starts_from_the_grid_cell(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    backend = SimulatedBackend(seconds=0.02, steps=1)
    async with started_bot(fake_discord, make_config(tmp_path), backend) as world:
        fake = fake_discord
        grid = await imagine_grid(world, "an owl")
        upscale = await _upscale(world, grid, cell=4)
        subtle = await _result(
            world, await fake.click(upscale, custom_id(upscale, "Upscale (Subtle)")), _is_upscale
        )
        await _result(world, await fake.click(subtle, custom_id(subtle, "Vary (Strong)")))
        call = backend.calls[-1]
        grid_job = await _job_id(grid)
        assert (call.mode, call.parent) == (Mode.VARIATION, f"{grid_job}#4")
        assert call.init_image == await _image_path(world, grid_job, 4)
        (variation,) = await _jobs(world, kind=JobKind.VARIATION)
        assert (variation.parent_id, variation.parent_index) == (grid_job, 4)
