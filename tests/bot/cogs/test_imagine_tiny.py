"""The main path with the real diffusers backend on the tiny model: /imagine → grid → U1 and V1."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.backend import Backend
from engine.images import read_recipe
from fakediscord import FakeDiscord
from tests.bot.discord_fixtures import custom_id, imagine_grid, make_config, started_bot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`IMAGINE_MODEL=tiny` when its trained weights are in the repo, else the same architecture with
    random weights saved as a local diffusers folder (the bot's path is the same either way)."""
    from engine.tiny import MODEL_DIR, build_random_pipeline

    if (MODEL_DIR / "model_index.json").exists():
        return "tiny"
    folder = tmp_path_factory.mktemp("tiny-random")
    build_random_pipeline().save_pretrained(folder)
    return str(folder)


@pytest.fixture
def tiny_backend(tiny_model: str) -> Backend:
    """A backend of its own per test: the bot closes its backend when it stops."""
    from engine.backends import load_backend

    return load_backend(tiny_model, device="cpu", diffusion_upscale=False)


async def test_imagine_upscale_and_vary_with_the_tiny_model(
    fake_discord: FakeDiscord, tmp_path: Path, tiny_backend: Backend
) -> None:
    fake = fake_discord
    async with started_bot(fake, make_config(tmp_path, model="tiny"), tiny_backend) as world:
        grid = await imagine_grid(world, "a red circle on a blue background --steps 3 --seed 11", wait_s=120)
        picture = Image.open(io.BytesIO(grid.attachments[0].data))
        picture.save(tmp_path / "grid.png")
        assert picture.size == (128, 128)
        recipe = read_recipe(grid.attachments[0].data)  # the recipe travels with the posted file
        assert recipe is not None
        assert recipe.startswith("a red circle on a blue background\n")

        press = await fake.click(grid, custom_id(grid, "U1"))
        await press.response(timeout=3)
        upscale = await press.wait_original()
        await fake.wait_for(lambda _: bool(upscale.attachments), timeout=120, what="the upscale")
        upscaled = Image.open(io.BytesIO(upscale.attachments[0].data))
        assert upscaled.size == (128, 128)
        # With plain resampling an upscale is its cell, enlarged: compare at the cell's size.
        cell = picture.crop((0, 0, 64, 64)).convert("RGB")
        small = upscaled.convert("RGB").resize((64, 64), Image.Resampling.BOX)
        difference = np.abs(np.asarray(cell, dtype=float) - np.asarray(small, dtype=float)).mean()
        assert difference < 12

        press = await fake.click(grid, custom_id(grid, "V1"))
        await press.response(timeout=3)
        variation = await press.wait_original()
        await fake.wait_for(
            lambda _: len(variation.custom_ids()) == 9, timeout=120, what="the variation grid"
        )
        await world.jobs.wait_idle()


async def test_zoom_out_and_pan_with_the_tiny_model(
    fake_discord: FakeDiscord, tmp_path: Path, tiny_backend: Backend
) -> None:
    fake = fake_discord
    async with started_bot(fake, make_config(tmp_path, model="tiny"), tiny_backend) as world:
        grid = await imagine_grid(world, "a red circle on a blue background --steps 3 --seed 5", wait_s=120)
        press = await fake.click(grid, custom_id(grid, "U1"))
        await press.response(timeout=3)
        upscale = await press.wait_original()
        await fake.wait_for(lambda _: bool(upscale.attachments), timeout=120, what="the upscale")
        source = Image.open(io.BytesIO(upscale.attachments[0].data)).convert("RGB")
        assert source.size == (128, 128)

        async def edited(label: str) -> Image.Image:
            press = await fake.click(upscale, custom_id(upscale, label))
            await press.response(timeout=3)
            message = await press.wait_original()
            await fake.wait_for(lambda _: len(message.custom_ids()) == 9, timeout=180, what=label)
            return Image.open(io.BytesIO(message.attachments[0].data)).convert("RGB")

        # Zoom Out 2x: four fills on a canvas of the source's own size.
        zoomed = await edited("Zoom Out 2x")
        assert zoomed.size == (2 * 128, 2 * 128)

        # ⬅️: the canvas grows by half the source's width on the left; the source keeps the right.
        panned = await edited("⬅️")
        assert panned.size == (2 * 192, 2 * 128)
        cell = panned.crop((0, 0, 192, 128))
        margin = 16  # past the feather, the source's own pixels are put back untouched
        kept = np.asarray(cell.crop((64 + margin, 0, 192, 128)), dtype=float)
        original = np.asarray(source.crop((margin, 0, 128, 128)), dtype=float)
        assert np.abs(kept - original).mean() < 2
        await world.jobs.wait_idle()
