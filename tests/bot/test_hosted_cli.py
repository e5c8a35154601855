"""`imaginebot imagine` and `imaginebot run` on the OpenAI engine, as real processes against the
loopback fake Images API: a grid on disk, and one sentence with exit 2 for a prompt or key to fix."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.fakeopenai import FakeImagesAPI, fake_images_api

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-key"

pytestmark = pytest.mark.slow


async def _imaginebot(tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "IMAGINE_DATA_DIR": str(tmp_path / "data"),
        "IMAGINE_MODEL": "openai:gpt-image-1",
        "OPENAI_API_KEY": KEY,
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        env=environment,
        cwd=tmp_path,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


@pytest.fixture
async def api() -> FakeImagesAPI:
    async with fake_images_api(api_key=KEY) as fake:
        yield fake  # type: ignore[misc]
        assert fake.violations == []


async def test_imagine_writes_a_grid_made_by_the_hosted_engine(api: FakeImagesAPI, tmp_path: Path) -> None:
    code, stderr = await _imaginebot(
        tmp_path, "imagine", "a lighthouse --ar 3:2 --q .5", "-o", "grid.png", OPENAI_BASE_URL=api.base_url
    )
    assert code == 0, stderr
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (3072, 2048)
        recipe = grid.text.get("parameters", "")  # type: ignore[attr-defined]
    assert 'Model: "openai:gpt-image-1"' in recipe
    assert 'engine: "OpenAI gpt-image-1 (takes no seed, steps or CFG' in recipe
    assert "quality: medium" in recipe
    (call,) = api.image_requests()
    assert (call.params["size"], call.params["quality"]) == ("1536x1024", "medium")


async def test_imagine_refuses_a_parameter_the_engine_cannot_honour(
    api: FakeImagesAPI, tmp_path: Path
) -> None:
    code, stderr = await _imaginebot(
        tmp_path, "imagine", "a cat --seed 4", "-o", "g.png", OPENAI_BASE_URL=api.base_url
    )
    assert code == 2
    assert stderr.strip().endswith("imaginebot: OpenAI gpt-image-1 can't honour `--seed`; remove it.")
    assert api.image_requests() == []


@pytest.mark.parametrize("command", [["imagine", "a cat", "-o", "g.png"], ["run"]])
async def test_a_rejected_key_is_one_sentence_and_exit_2(
    api: FakeImagesAPI, tmp_path: Path, command: list[str]
) -> None:
    code, stderr = await _imaginebot(
        tmp_path,
        *command,
        OPENAI_BASE_URL=api.base_url,
        OPENAI_API_KEY="sk-wrong",
        DISCORD_TOKEN="fake-token",
    )
    assert code == 2
    last = stderr.strip().splitlines()[-1]
    assert "rejected OPENAI_API_KEY (401: Incorrect API key provided." in last
    assert "Traceback" not in stderr


async def test_an_unreachable_base_url_is_one_sentence_fast(tmp_path: Path) -> None:
    began = time.monotonic()
    code, stderr = await _imaginebot(
        tmp_path, "run", OPENAI_BASE_URL="http://127.0.0.1:9/v1", DISCORD_TOKEN="fake-token"
    )
    assert code == 1
    assert stderr.strip().splitlines()[-1] == (
        "imaginebot: The Images API at http://127.0.0.1:9/v1/ cannot be reached; check OPENAI_BASE_URL and "
        "this machine's network."
    )
    assert "Traceback" not in stderr
    assert time.monotonic() - began < 60  # most of it is importing; the look-up itself fails at once
