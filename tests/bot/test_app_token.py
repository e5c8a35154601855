"""`bot.app.run` end to end up to the login, with a token Discord rejects."""

from __future__ import annotations

from pathlib import Path

import discord
import pytest

from bot.app import run
from engine.simulated import SimulatedBackend
from fakediscord import FakeConfig, FakeDiscord
from tests.bot.discord_fixtures import make_config


@pytest.fixture
def fake_discord_config() -> FakeConfig:
    return FakeConfig(bot_token="the-real-token")


async def test_run_builds_everything_and_stops_on_a_rejected_token(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    backend = SimulatedBackend()
    config = make_config(tmp_path, discord_token="a-wrong-token")
    with pytest.raises(discord.LoginFailure):
        await run(config, "a-wrong-token", backend=backend)
    assert (tmp_path / "imaginebot.db").exists()  # migrated before the engine and Discord
    assert backend.closed  # and everything it built was closed again
