"""Fixtures for the fake's own self-tests (the same ones tests/bot/conftest.py offers)."""

from fakediscord.fixtures import fake_discord, fake_discord_config

__all__ = ["fake_discord", "fake_discord_config"]
