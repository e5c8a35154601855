"""The pytest fixtures: `fake_discord_config` (override it to change limits) and `fake_discord`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fakediscord.harness import redirect_discord
from fakediscord.server import FakeConfig, FakeDiscord

__all__ = ["fake_discord", "fake_discord_config"]


@pytest.fixture
def fake_discord_config() -> FakeConfig:
    """Production limits; override this fixture in a test module to change them."""
    return FakeConfig()


@pytest.fixture
async def fake_discord(fake_discord_config: FakeConfig) -> AsyncIterator[FakeDiscord]:
    """A started fake Discord with discord.py redirected to it (restored afterwards)."""
    async with FakeDiscord(fake_discord_config) as fake:
        with redirect_discord(fake):
            yield fake
