"""Start-up: the composition root's refusals and the command sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app import EXIT_USAGE, main
from engine.simulated import SimulatedBackend
from fakediscord import FakeDiscord
from tests.bot.discord_fixtures import make_config, started_bot

COMMANDS = ["blend", "cancel", "config", "gallery", "history", "imagine", "info", "quota", "settings", "show"]


def test_without_a_token_it_says_how_to_get_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config(tmp_path, discord_token=None)
    assert main(config) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "DISCORD_TOKEN" in err
    assert "https://discord.com/developers/applications" in err
    assert "no privileged intents" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "imaginebot.db").exists()


async def test_commands_sync_to_the_dev_guild_when_set(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    config = make_config(tmp_path, dev_guild_id=fake_discord.guild.id)
    async with started_bot(fake_discord, config, SimulatedBackend()) as world:
        synced = fake_discord.state.guild_commands[fake_discord.guild.id]
        assert sorted(c["name"] for c in synced) == COMMANDS
        imagine = next(c for c in synced if c["name"] == "imagine")
        assert [(o["name"], o["type"], o.get("required")) for o in imagine["options"]] == [
            ("prompt", 3, True),
            ("image", 11, False),  # 11: an attachment
            ("image2", 11, False),
            ("image3", 11, False),
        ]
        blend = next(c for c in synced if c["name"] == "blend")
        assert [o["name"] for o in blend["options"] if o.get("required")] == ["image1", "image2"]
        admin = {c["name"]: c.get("default_member_permissions") for c in synced}
        assert str(admin["quota"]) == str(admin["config"]) == "32"
        assert admin["imagine"] is None
        assert not world.bot.intents.message_content
        assert not world.bot.intents.members
        assert not world.bot.intents.presences


async def test_commands_sync_globally_without_a_dev_guild(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    async with started_bot(fake_discord, make_config(tmp_path), SimulatedBackend()):
        assert sorted(c["name"] for c in fake_discord.state.global_commands) == COMMANDS
        assert not fake_discord.state.guild_commands.get(fake_discord.guild.id)
