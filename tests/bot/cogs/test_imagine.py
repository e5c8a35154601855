"""/imagine through the real discord.py client and the loopback fake Discord."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

from PIL import Image

from engine.errors import GenerationError
from engine.simulated import SimulatedBackend
from engine.types import GenerationRequest
from fakediscord import FakeDiscord
from tests.bot.discord_fixtures import imagine_grid, make_config, started_bot

GRID_LABELS = ["U1", "U2", "U3", "U4", "", "V1", "V2", "V3", "V4"]


async def test_imagine_acks_shows_progress_and_posts_the_grid(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    config = make_config(tmp_path)
    backend = SimulatedBackend(seconds=1.6, steps=8, previews=True)
    async with started_bot(fake_discord, config, backend) as world:
        user = fake_discord.member
        interaction = await fake_discord.slash("imagine", {"prompt": "a red fox --seed 7"}, user=user)
        response = await interaction.response(timeout=3)
        assert interaction.ack_latency is not None
        assert interaction.ack_latency < 3
        assert not response.data.get("flags", 0) & 64, "the job message is public"

        head = f"**a red fox --seed 7** - <@{user.user.id}>"
        message = await fake_discord.wait_for_message(
            lambda m: m.content == head and len(m.custom_ids()) == 9, timeout=15
        )
        await world.jobs.wait_idle()

    contents = [revision.content for revision in message.history]
    assert contents[0] == f"{head} (Waiting to start)"
    progress = [c for c in contents if c.endswith("%)")]
    assert progress, contents
    assert all(c.startswith(head + " (") for c in progress)
    # Progress edits carry a preview image and are throttled to the configured interval.
    with_preview = [r for r in message.history if r.content.endswith("%)") and r.attachments]
    assert with_preview
    times = [r.at for r in message.history if r.content.endswith("%)")]
    assert all(b - a >= config.progress_interval_s * 0.9 for a, b in itertools.pairwise(times))
    assert message.content == head
    assert message.button_labels() == GRID_LABELS
    assert any("🔄" in str(button.get("emoji")) for button in message.buttons())
    grid = Image.open(io.BytesIO(message.attachments[0].data))
    assert grid.size == (128, 128)
    assert grid.format == "WEBP"  # IMAGINE_DISCORD_IMAGE_FORMAT's default: lossy, colours within a few levels
    # Cell 1 is top-left, drawn with seed 7; cell 2 top-right with seed 8 (the simulated colours).
    assert _near(grid.getpixel((10, 10)), (7 * 67 % 256, 7 * 131 % 256, 7 * 197 % 256))
    assert _near(grid.getpixel((74, 10)), (8 * 67 % 256, 8 * 131 % 256, 8 * 197 % 256))


def _near(pixel: object, colour: tuple[int, int, int], levels: int = 4) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) <= levels for a, b in zip(pixel, colour, strict=True))


async def test_a_failed_job_tells_its_owner_in_its_message(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    def fail(request: GenerationRequest) -> BaseException | None:
        return GenerationError("the model rejected this prompt") if "doomed" in request.prompt else None

    backend = SimulatedBackend(seconds=0.05, fail=fail)
    async with started_bot(fake_discord, make_config(tmp_path), backend) as world:
        interaction = await fake_discord.slash("imagine", {"prompt": "a doomed ship"})
        message = await interaction.wait_original()
        await fake_discord.wait_for(lambda _: "(failed:" in message.content, timeout=10, what="the notice")
        await world.jobs.wait_idle()
        assert message.content == (
            f"**a doomed ship** - <@{fake_discord.member.user.id}> (failed: the model rejected this prompt)"
        )
        assert message.custom_ids() == []


async def test_settings_defaults_apply_and_typed_parameters_override_them(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    backend = SimulatedBackend(seconds=0.05)
    config = make_config(tmp_path, model_aliases={"niji": "/models/anime"})
    async with started_bot(fake_discord, config, backend) as world:
        fake = fake_discord
        panel_call = await fake.slash("settings")
        panel = await panel_call.wait_original()
        for custom_id in ("ibset:ar:16:9", "ibset:stylize:250"):
            click = await fake.click(panel, custom_id)
            await click.response(timeout=3)
        click = await fake.click(panel, "ibset:model", values=["niji"])
        await click.response(timeout=3)
        assert "--aspect 16:9" in panel.content
        assert "--stylize 250" in panel.content
        assert "Model: niji" in panel.content

        await imagine_grid(world, "a wide valley")
        await world.jobs.wait_idle()
        call = backend.calls[-1]
        assert (call.aspect_ratio, call.stylize, call.model) == ((16, 9), 250, "niji")

        await imagine_grid(world, "a square valley --ar 1:1")
        await world.jobs.wait_idle()
        assert (backend.calls[-1].aspect_ratio, backend.calls[-1].stylize) == ((1, 1), 250)


async def test_permutations_post_one_message_per_job(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    backend = SimulatedBackend(seconds=0.05)
    async with started_bot(fake_discord, make_config(tmp_path), backend) as world:
        interaction = await fake_discord.slash("imagine", {"prompt": "a {red, blue} bird"})
        await interaction.response(timeout=3)
        user = fake_discord.member.user.id
        for colour in ("red", "blue"):
            await fake_discord.wait_for_message(
                lambda m, c=colour: m.content == f"**a {c} bird** - <@{user}>" and len(m.custom_ids()) == 9,
                timeout=10,
            )
        await world.jobs.wait_idle()
        assert sorted(call.prompt for call in backend.calls) == ["a blue bird", "a red bird"]
