"""Admin commands: hidden from members by Discord, and refused by the bot itself as well."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from bot.policy import QuotaScope
from bot.store.models import GuildRules, QuotaRule
from engine.simulated import SimulatedBackend
from fakediscord import FakeDiscord, FakeDiscordError
from tests.bot.discord_fixtures import make_config, started_bot


async def test_admin_commands_refuse_non_admins(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    async with started_bot(fake_discord, make_config(tmp_path), SimulatedBackend()) as world:
        fake = fake_discord
        # Discord does not even offer them (default_member_permissions = Manage Server).
        with pytest.raises(FakeDiscordError, match="needs permissions 32"):
            await fake.slash("quota set", {"jobs_per_day": 0}, user=fake.member)

        # A server admin may override that in Discord's config; the bot checks again.
        for command in fake.state.global_commands:
            if command["name"] in ("quota", "config"):
                command.pop("default_member_permissions", None)
        for name, options in [("quota set", {"jobs_per_day": 0}), ("config buttons", {"owner_only": True})]:
            answer = await (await fake.slash(name, options, user=fake.member)).response(timeout=3)
            assert answer.data["flags"] & 64
            assert "Manage Server" in answer.data["content"]
        async with world.bot.db.session() as session:
            assert (await session.scalars(select(QuotaRule))).all() == []
            assert (await session.scalars(select(GuildRules))).all() == []

        # An admin can.
        admin_call = await fake.slash("quota set", {"jobs_per_day": 5}, user=fake.admin)
        answer = await admin_call.response(timeout=3)
        assert "jobs/day 5" in answer.data["content"]
        async with world.bot.db.session() as session:
            rules = (await session.scalars(select(QuotaRule))).all()
        assert [(r.scope, r.target_id, r.jobs_per_day) for r in rules] == [(QuotaScope.GUILD, None, 5)]
