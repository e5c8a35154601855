"""Fixtures for testing the bot against the loopback fake Discord (see fakediscord/__init__.py).

- `fake_discord`: a started `FakeDiscord` with discord.py redirected to it, restored afterwards.
- `fake_discord_config`: the `FakeConfig` it uses; override this fixture to change limits.
- `run_bot` (import from fakediscord): `async with run_bot(bot, fake_discord) as running:`.

Bot-specific fixtures belong in the bot tests' own files, not here.
"""

from fakediscord.fixtures import fake_discord, fake_discord_config

__all__ = ["fake_discord", "fake_discord_config"]
