"""The GAN engine end to end: `imaginebot imagine` with IMAGINE_MODEL=gan-tiny, and the bot through the
loopback fake Discord (/imagine → grid, U2 → a resampled cell, V3 → variations of its cell, 🔄 → new z's)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from bot.cli import main as cli_main
from bot.store.models import Job, JobStatus
from engine.gan import ENGINE
from engine.images import crop_cell, read_recipe
from fakediscord import FakeDiscord
from tests.bot.discord_fixtures import custom_id, imagine_grid, make_config, started_bot

PROMPT = "a yellow square on a black background"


def _rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)


def test_imagine_on_gan_tiny_writes_a_grid_sized_by_ar_with_its_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no developer `.env` leaks in
    monkeypatch.setenv("IMAGINE_MODEL", "gan-tiny")
    monkeypatch.setenv("IMAGINE_DEVICE", "cpu")
    monkeypatch.setenv("IMAGINE_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "out"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = cli_main(["imagine", f"{PROMPT} --ar 3:2 --seed 7", "-o", str(out / "grid.png"), "-q"])
    assert code == 0, stdout.getvalue()
    with Image.open(out / "grid.png") as grid:
        grid.load()
    assert grid.size == (192, 128)  # four 96×64 cells: a 6×4 z-map each
    for n in range(1, 5):
        with Image.open(out / f"grid-{n}.png") as cell:
            assert cell.tobytes() == crop_cell(grid, n).tobytes()
        recipe = read_recipe(out / f"grid-{n}.png") or ""
        assert recipe.startswith(f"{PROMPT}\n")
        assert f"Seed: {6 + n}, Size: 96x64, " in recipe
        assert "Steps: 1, Sampler: gan, CFG scale: 0" in recipe
        assert "Model: gan-tiny" in recipe
    # Black dominates a picture of "... on a black background".
    assert np.median(np.asarray(grid.convert("L"))) < 60


async def test_imagine_upscale_vary_and_reroll_on_gan_tiny(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    fake = fake_discord
    backend = ENGINE.load("gan-tiny", device="cpu", safety_checker="model")
    async with started_bot(fake, make_config(tmp_path, model="gan-tiny"), backend) as world:
        grid = await imagine_grid(world, f"{PROMPT} --seed 100", wait_s=60)
        picture = _rgb(grid.attachments[0].data)
        assert picture.shape == (128, 128, 3)
        assert "Sampler: gan" in (read_recipe(grid.attachments[0].data) or "")

        # U2: the cell, resampled to twice its size, the recipe saying so.
        press = await fake.click(grid, custom_id(grid, "U2"))
        await press.response(timeout=3)
        upscale = await press.wait_original()
        await fake.wait_for(lambda _: bool(upscale.attachments), timeout=60, what="the upscale")
        big = Image.open(io.BytesIO(upscale.attachments[0].data)).convert("RGB")
        assert big.size == (128, 128)
        cell = picture[:64, 64:]
        small = np.asarray(big.resize((64, 64), Image.Resampling.BOX), dtype=np.float32)
        assert np.abs(cell - small).mean() < 6
        assert "Lanczos" in (read_recipe(upscale.attachments[0].data) or "")

        # V3: four variations of cell 3, nearer to it than the grid's other cells are.
        press = await fake.click(grid, custom_id(grid, "V3"))
        await press.response(timeout=3)
        variation = await press.wait_original()
        await fake.wait_for(lambda _: len(variation.custom_ids()) == 9, timeout=60, what="the variations")
        varied = _rgb(variation.attachments[0].data)
        cells = [picture[:64, :64], picture[:64, 64:], picture[64:, :64], picture[64:, 64:]]
        varied_cells = [varied[:64, :64], varied[:64, 64:], varied[64:, :64], varied[64:, 64:]]
        to_own = np.mean([np.abs(v - cells[2]).mean() for v in varied_cells])
        to_others = np.mean(
            [np.abs(v - c).mean() for v in varied_cells for c in (cells[0], cells[1], cells[3])]
        )
        assert to_own < to_others
        assert "inversion" in (read_recipe(variation.attachments[0].data) or "")

        # 🔄: new z's, a new grid of the same prompt.
        press = await fake.click(grid, custom_id(grid, "🔄"))
        await press.response(timeout=3)
        rerolled = await press.wait_original()
        await fake.wait_for(lambda _: len(rerolled.custom_ids()) == 9, timeout=60, what="the re-rolled grid")
        assert np.abs(_rgb(rerolled.attachments[0].data) - picture).mean() > 1
        await world.jobs.wait_idle()

        async with world.bot.db.session() as session:
            jobs = (await session.scalars(select(Job))).all()
        assert len(jobs) == 4
        assert all(job.status is JobStatus.SUCCEEDED for job in jobs)
