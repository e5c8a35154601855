"""The bot sharded: `IMAGINE_SHARDS`, or Discord's recommended count, through the loopback fake Discord."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from engine.simulated import SimulatedBackend
from fakediscord import FakeConfig, FakeDiscord, FakeGuild, InteractionRecord, MessageRecord
from tests.bot.discord_fixtures import BotWorld, make_config, started_bot


async def imagine_in(
    world: BotWorld, guild: FakeGuild, prompt: str
) -> tuple[InteractionRecord, MessageRecord]:
    """Run /imagine as a plain member of `guild` in its #general; return the interaction and its grid."""
    fake, member = world.fake, guild.members[1]
    interaction = await fake.slash("imagine", {"prompt": prompt}, guild=guild, user=member)
    await interaction.response(timeout=3)
    grid = await fake.wait_for_message(
        lambda m: len(m.custom_ids()) == 9 and bool(m.attachments) and f"<@{member.user.id}>" in m.content,
        channel=guild.channels[0],
        timeout=15,
    )
    return interaction, grid


def gateway_bot_requests(fake: FakeDiscord) -> int:
    return sum(1 for r in fake.state.requests if (r.method, r.path) == ("GET", "/gateway/bot"))


async def test_imagine_shards_2_runs_two_sessions_and_serves_a_guild_on_shard_1(
    fake_discord: FakeDiscord,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("IMAGINE_SHARDS", "2")
    fake = fake_discord  # recommends 1 shard: the setting must win
    second = fake.add_guild(shard=(1, 2))
    config = make_config(tmp_path)
    assert config.shards == 2
    with caplog.at_level(logging.INFO, logger="bot.client"):
        async with started_bot(fake, config, SimulatedBackend()) as world:
            assert world.bot.shard_count == 2
            assert [i["shard"] for i in fake.state.identifies] == [[0, 2], [1, 2]]
            assert sorted(s.shard for s in fake.sessions if s.ready) == [(0, 2), (1, 2)]
            assert gateway_bot_requests(fake) == 0
            assert {g.id for g in world.bot.guilds} == {fake.guild.id, second.id}
            guild = world.bot.get_guild(second.id)
            assert guild is not None
            assert guild.shard_id == 1

            interaction, grid = await imagine_in(world, second, "a lighthouse at dusk --seed 3")
            assert interaction.shard == (1, 2)
            assert grid.guild_id == second.id
            assert grid.content.startswith("**a lighthouse at dusk --seed 3** - ")
    assert "in 2 guilds on 2 shards" in caplog.text


@pytest.mark.parametrize("recommended", [1, 2])
async def test_without_imagine_shards_the_bot_runs_discords_recommendation(
    recommended: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IMAGINE_SHARDS", raising=False)
    config = make_config(tmp_path)
    assert config.shards is None
    async with FakeDiscord(FakeConfig(recommended_shards=recommended)) as fake:
        last = recommended - 1
        guild = fake.add_guild(shard=(last, recommended))
        async with started_bot(fake, config, SimulatedBackend()) as world:
            assert gateway_bot_requests(fake) == 1
            assert world.bot.shard_count == recommended
            assert [i["shard"] for i in fake.state.identifies] == [
                [n, recommended] for n in range(recommended)
            ]
            interaction, grid = await imagine_in(world, guild, "a red circle")
            assert interaction.shard == (last, recommended)
            assert grid.guild_id == guild.id
