"""Sharding in the fake Discord: the recommended count, which session gets which guild, refusals."""

from __future__ import annotations

from typing import Any

import aiohttp
import discord
import pytest
from discord.ext import commands

from fakediscord.gateway import GatewaySession
from fakediscord.harness import run_bot
from fakediscord.payloads import shard_of, snowflake_on_shard
from fakediscord.server import FakeConfig, FakeDiscord


def sharded_bot(**options: Any) -> commands.AutoShardedBot:
    """An AutoShardedBot with `/where` (answers its guild's shard) and `/dm` (DMs the caller)."""
    bot = commands.AutoShardedBot(command_prefix="!", intents=discord.Intents.default(), **options)

    @bot.tree.command(description="which shard serves this guild")
    async def where(interaction: discord.Interaction) -> None:
        assert interaction.guild is not None
        await interaction.response.send_message(f"shard {interaction.guild.shard_id}")

    @bot.tree.command(description="send the caller a DM")
    async def dm(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("sent", ephemeral=True)
        await interaction.user.send("psst")

    async def setup_hook() -> None:
        await bot.tree.sync()

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    return bot


def guilds_created(session: GatewaySession) -> list[int]:
    return [guild_id for event, guild_id in session.dispatched if event == "GUILD_CREATE" and guild_id]


def test_snowflake_on_shard_lands_on_the_shard() -> None:
    for count in (1, 2, 3, 16):
        for shard_id in range(count):
            assert shard_of(snowflake_on_shard(shard_id, count), count) == shard_id
    with pytest.raises(ValueError, match="does not exist"):
        snowflake_on_shard(2, 2)


async def test_gateway_bot_recommends_the_configured_count() -> None:
    async with FakeDiscord(FakeConfig(recommended_shards=3)) as fake, aiohttp.ClientSession() as http:
        async with http.get(f"{fake.api_url}/gateway/bot") as response:
            bot_gateway = await response.json()
        async with http.get(f"{fake.api_url}/gateway") as response:
            gateway = await response.json()
    assert bot_gateway["shards"] == 3
    assert bot_gateway["session_start_limit"]["max_concurrency"] == 1
    assert gateway == {"url": bot_gateway["url"]}


async def test_each_guild_goes_to_its_shard_and_dms_to_shard_0() -> None:
    async with FakeDiscord(FakeConfig(recommended_shards=2)) as fake:
        first, second = fake.add_guild(shard=(0, 2)), fake.add_guild(shard=(1, 2))
        bot = sharded_bot()
        async with run_bot(bot, fake):
            # No shard_count given: discord.py asked GET /gateway/bot and ran what it recommends.
            assert bot.shard_count == 2
            assert [i["shard"] for i in fake.state.identifies] == [[0, 2], [1, 2]]
            sessions = {s.shard: s for s in fake.sessions if s.ready}
            zero, one = sessions[(0, 2)], sessions[(1, 2)]
            assert len(sessions) == 2

            # Every guild arrives once, on the session its id selects.
            everyone = [g.id for g in fake.world.guilds]
            assert sorted(guilds_created(zero) + guilds_created(one)) == sorted(everyone)
            assert first.id in guilds_created(zero)
            assert second.id in guilds_created(one)
            assert all(shard_of(g, 2) == 0 for g in guilds_created(zero))
            assert {g.id for g in bot.guilds} == set(everyone)

            # An interaction goes to its guild's shard, and so does the bot's reply coming back.
            interaction = await fake.slash("where", guild=second)
            assert interaction.shard == (1, 2)
            reply = await interaction.wait_original()
            assert reply.content == "shard 1"
            await fake.wait_for(lambda _: ("MESSAGE_CREATE", second.id) in one.dispatched)
            assert ("INTERACTION_CREATE", second.id) in one.dispatched
            assert all(guild_id != second.id for _, guild_id in zero.dispatched)
            there = await fake.slash("where", guild=first)
            assert there.shard == (0, 2)
            assert (await there.wait_original()).content == "shard 0"

            # A DM's MESSAGE_CREATE goes to shard 0 only.
            await (await fake.slash("dm", guild=second)).response()
            await fake.wait_for(lambda _: ("MESSAGE_CREATE", None) in zero.dispatched)
            assert ("MESSAGE_CREATE", None) not in one.dispatched

            # A guild the bot joins while running is announced on its shard only.
            joined = fake.add_guild(shard=(1, 2), name="Joined Later")
            await fake.wait_for(lambda _: bot.get_guild(joined.id) is not None)
            assert joined.id in guilds_created(one)
            assert joined.id not in guilds_created(zero)


@pytest.mark.parametrize("shard", [[2, 2], [0, 0], [-1, 1], [1], "0,1", [0, True]])
async def test_an_identify_for_a_shard_that_does_not_exist_is_closed_with_4010(shard: object) -> None:
    async with FakeDiscord() as fake, aiohttp.ClientSession() as http:
        async with http.ws_connect(fake.gateway_url) as ws:
            hello = await ws.receive_json()
            assert hello["op"] == 10
            await ws.send_json({"op": 2, "d": {"token": "t", "intents": 0, "properties": {}, "shard": shard}})
            closing = await ws.receive()
        assert (closing.type, closing.data, closing.extra) == (aiohttp.WSMsgType.CLOSE, 4010, "Invalid shard")
        assert fake.state.gateway_refusals == [(4010, "Invalid shard")]
        assert not any(s.ready for s in fake.sessions)


async def test_discord_py_stops_on_invalid_shard_and_on_sharding_required() -> None:
    async with FakeDiscord(FakeConfig(max_guilds_per_session=1)) as fake:
        fake.add_guild(shard=(1, 2))
        # Shard 2 of 2 does not exist.
        with pytest.raises(AssertionError, match="stopped before it was ready") as invalid:
            async with run_bot(sharded_bot(shard_ids=[2], shard_count=2), fake, require_sync=False):
                pass
        assert isinstance(invalid.value.__cause__, discord.ConnectionClosed)
        assert invalid.value.__cause__.code == 4010
        # One unsharded session would serve both guilds, over the limit of one.
        plain = commands.Bot(command_prefix="!", intents=discord.Intents.none())
        with pytest.raises(AssertionError, match="stopped before it was ready") as required:
            async with run_bot(plain, fake, require_sync=False):
                pass
        assert isinstance(required.value.__cause__, discord.ConnectionClosed)
        assert required.value.__cause__.code == 4011
        assert fake.state.gateway_refusals == [(4010, "Invalid shard"), (4011, "Sharding required")]
