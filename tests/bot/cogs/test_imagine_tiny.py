"""The main path with the real diffusers backend on the tiny model: /imagine → grid → U1 and V1."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.backend import Backend
from fakediscord import FakeDiscord
from tests.bot.discord_fixtures import custom_id, imagine_grid, make_config, started_bot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_backend(tmp_path_factory: pytest.TempPathFactory) -> Backend:
    """`IMAGINE_MODEL=tiny` when its trained weights are in the repo, else the same architecture with
    random weights saved as a local diffusers folder (the bot's path is the same either way)."""
    from engine.backends import load_backend
    from engine.tiny import MODEL_DIR, build_random_pipeline

    model = "tiny"
    if not (MODEL_DIR / "model_index.json").exists():
        folder = tmp_path_factory.mktemp("tiny-random")
        build_random_pipeline().save_pretrained(folder)
        model = str(folder)
    return load_backend(model, device="cpu", diffusion_upscale=False)


async def test_imagine_upscale_and_vary_with_the_tiny_model(
    fake_discord: FakeDiscord, tmp_path: Path, tiny_backend: Backend
) -> None:
    fake = fake_discord
    async with started_bot(fake, make_config(tmp_path, model="tiny"), tiny_backend) as world:
        grid = await imagine_grid(world, "a red circle on a blue background --steps 3 --seed 11", wait_s=120)
        picture = Image.open(io.BytesIO(grid.attachments[0].data))
        picture.save(tmp_path / "grid.png")
        assert picture.size == (128, 128)
        assert "parameters" in picture.info  # the recipe travels with the posted file

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
