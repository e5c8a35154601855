"""Self-tests of the fake Discord, driving a small throwaway bot defined here."""

from __future__ import annotations

import asyncio
import io
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from fakediscord.harness import run_bot
from fakediscord.payloads import MANAGE_GUILD
from fakediscord.server import FakeConfig, FakeDiscord, FakeDiscordError
from fakediscord.state import FakeState

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
ROOT = Path(__file__).resolve().parents[2]


class CountButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"count:(?P<n>\d+)"):
    """A persistent button whose state lives in its custom_id."""

    def __init__(self, n: int) -> None:
        super().__init__(discord.ui.Button(label=f"count {n}", custom_id=f"count:{n}"))
        self.n = n

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> CountButton:
        return cls(int(match["n"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        view = discord.ui.View(timeout=None).add_item(CountButton(self.n + 1))
        await interaction.response.send_message(f"clicked {self.n}", view=view)


class FlipButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"flip:(?P<on>[01])"):
    """Updates its own message: type 7 when turning on, type 6 + edit of @original when turning off."""

    def __init__(self, on: bool) -> None:
        super().__init__(discord.ui.Button(label="on" if on else "off", custom_id=f"flip:{int(on)}"))
        self.on = on

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> FlipButton:
        return cls(match["on"] == "1")

    async def callback(self, interaction: discord.Interaction) -> None:
        view = discord.ui.View(timeout=None).add_item(FlipButton(not self.on))
        if not self.on:
            await interaction.response.edit_message(content="on", view=view)
        else:
            await interaction.response.defer()
            await interaction.edit_original_response(content="off again", view=view)


class AskModal(discord.ui.Modal, title="Tell me"):
    answer: discord.ui.TextInput[AskModal] = discord.ui.TextInput(label="Answer", custom_id="answer")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"you said {self.answer.value}")


@dataclass
class Probe:
    """What the throwaway bot's handlers saw, for the tests to assert on."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    errors: list[discord.HTTPException] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


def make_bot(probe: Probe) -> commands.Bot:
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.default())
    tree = bot.tree

    @tree.command(description="reply with a file and a persistent button")
    async def picture(interaction: discord.Interaction, name: str) -> None:
        view = discord.ui.View(timeout=None).add_item(CountButton(0))
        file = discord.File(io.BytesIO(PNG), filename=f"{name}.png")
        await interaction.response.send_message(f"here is {name}", file=file, view=view)

    @tree.command(description="open a modal")
    async def ask(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(AskModal())

    @tree.command(description="think, follow up twice, edit the original")
    async def work(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send("first")
        await interaction.followup.send("second", ephemeral=True)
        await interaction.edit_original_response(content="first, edited")

    @tree.command(description="an ephemeral reply")
    async def secret(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("only you", ephemeral=True)

    @tree.command(description="defer, wait for the test, then follow up or fall back to the channel")
    async def later(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await probe.release.wait()
        try:
            await interaction.followup.send("late result")
        except discord.HTTPException as exc:
            probe.errors.append(exc)
            assert isinstance(interaction.channel, discord.TextChannel)
            await interaction.channel.send(f"{interaction.user.mention} late result")
        probe.done.set()

    @tree.command(description="answer after a delay")
    async def slow(interaction: discord.Interaction, delay: float) -> None:
        await asyncio.sleep(delay)
        await interaction.response.send_message("slow answer")

    @tree.command(description="always fails")
    async def boom(interaction: discord.Interaction) -> None:
        raise RuntimeError("boom")

    @tree.command(description="break Discord's limits")
    async def toolong(interaction: discord.Interaction, what: str) -> None:
        await interaction.response.defer()
        view = discord.ui.View().add_item(discord.ui.Button(label="x", custom_id="x" * 101))
        try:
            if what == "content":
                await interaction.followup.send("y" * 2001)
            else:
                await interaction.followup.send("z", view=view)
        except discord.HTTPException as exc:
            probe.errors.append(exc)
        probe.done.set()

    @tree.command(description="post to the channel (retries on 429)")
    async def post(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("posting", ephemeral=True)
        assert isinstance(interaction.channel, discord.TextChannel)
        try:
            await interaction.channel.send("posted")
        except discord.HTTPException as exc:
            probe.errors.append(exc)
        probe.done.set()

    settings = app_commands.Group(
        name="settings", description="admin", default_permissions=discord.Permissions(manage_guild=True)
    )

    @settings.command(description="grant things")
    async def grant(
        interaction: discord.Interaction,
        user: discord.Member,
        role: discord.Role,
        channel: discord.TextChannel,
        count: int,
        flag: bool,
    ) -> None:
        allowed = interaction.permissions.manage_guild
        text = f"{user.name} {role.name} {channel.name} {count + 1} {flag} {allowed}"
        await interaction.response.send_message(text)

    tree.add_command(settings)

    @tree.command(description="a message that updates itself")
    async def flipper(interaction: discord.Interaction) -> None:
        view = discord.ui.View(timeout=None).add_item(FlipButton(False))
        await interaction.response.send_message("off", view=view)

    @tree.command(description="pick a colour")
    async def colour(interaction: discord.Interaction, name: str) -> None:
        await interaction.response.send_message(name)

    @colour.autocomplete("name")
    async def colour_names(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        names = ["red", "green", "grey"]
        return [app_commands.Choice(name=n, value=n) for n in names if n.startswith(current)]

    @tree.command(description="upload a file of `size` bytes")
    async def big(interaction: discord.Interaction, size: int) -> None:
        await interaction.response.defer()
        try:
            await interaction.followup.send(file=discord.File(io.BytesIO(b"x" * size), filename="big.bin"))
        except discord.HTTPException as exc:
            probe.errors.append(exc)
        probe.done.set()

    async def setup_hook() -> None:
        bot.add_dynamic_items(CountButton, FlipButton)
        await tree.sync()

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    return bot


@pytest.fixture
def probe() -> Probe:
    return Probe()


async def test_startup_sync_and_slash_with_file_and_button(fake_discord: FakeDiscord, probe: Probe) -> None:
    async with run_bot(make_bot(probe), fake_discord):
        synced = {c["name"] for c in fake_discord.state.commands()}
        assert {"picture", "ask", "settings"} <= synced
        assert len(fake_discord.state.command_syncs) == 1
        interaction = await fake_discord.slash("picture", {"name": "cat"})
        callback = await interaction.response(timeout=3)
        assert callback.type == 4
        assert interaction.ack_latency is not None
        assert interaction.ack_latency < 3
        message = interaction.original()
        assert message is not None
        assert message.content == "here is cat"
        assert message.attachment("cat.png").data == PNG
        assert message.custom_ids() == ["count:0"]

        click = await fake_discord.click(message, "count:0", user=fake_discord.other_member)
        await click.response()
        reply = click.original()
        assert reply is not None
        assert reply.content == "clicked 0"
        assert reply.custom_ids() == ["count:1"]
        with pytest.raises(FakeDiscordError, match="no component"):
            await fake_discord.click(message, "count:7")
    assert fake_discord.state.unknown_routes == []
    assert fake_discord.state.violations == []


async def test_modal_round_trip(fake_discord: FakeDiscord, probe: Probe) -> None:
    async with run_bot(make_bot(probe), fake_discord):
        opened = await fake_discord.slash("ask")
        assert (await opened.response()).type == 9
        assert opened.modal is not None
        assert opened.modal["title"] == "Tell me"
        submitted = await fake_discord.submit_modal(
            opened, opened.modal["custom_id"], {"answer": "forty-two"}
        )
        message = await submitted.wait_original()
        assert message.content == "you said forty-two"
        with pytest.raises(FakeDiscordError, match="no field"):
            await fake_discord.submit_modal(opened, values={"nope": "x"})


async def test_autocomplete(fake_discord: FakeDiscord, probe: Probe) -> None:
    async with run_bot(make_bot(probe), fake_discord):
        typed = await fake_discord.autocomplete("colour", {"name": "gr"}, focused="name")
        assert (await typed.response()).type == 8
        assert typed.autocomplete_choices == [
            {"name": "green", "value": "green"},
            {"name": "grey", "value": "grey"},
        ]


async def test_defer_followups_and_edit_original(fake_discord: FakeDiscord, probe: Probe) -> None:
    async with run_bot(make_bot(probe), fake_discord):
        interaction = await fake_discord.slash("work")
        assert (await interaction.response()).type == 5
        original = await interaction.wait_original(lambda m: m.content == "first, edited")
        # The first followup filled the "thinking" placeholder; the second is a new ephemeral message.
        assert [r.content for r in original.history] == ["", "first", "first, edited"]
        assert [r.flags & 128 for r in original.history] == [128, 0, 0]
        assert [(m.content, m.ephemeral) for m in interaction.followups()] == [("second", True)]
        assert not original.ephemeral


async def test_ephemeral_flag_is_recorded(fake_discord: FakeDiscord, probe: Probe) -> None:
    async with run_bot(make_bot(probe), fake_discord):
        interaction = await fake_discord.slash("secret")
        message = await interaction.wait_original()
        assert message.ephemeral
        assert message.flags & 64


@pytest.mark.parametrize("expiry", ["expire_token", "lifetime"])
async def test_expired_token_breaks_webhooks_but_not_channel_messages(expiry: str) -> None:
    probe = Probe()
    config = FakeConfig(token_lifetime_s=0.3 if expiry == "lifetime" else 900)
    async with FakeDiscord(config) as fake, run_bot(make_bot(probe), fake):
        interaction = await fake.slash("later", user=fake.member)
        await interaction.response()
        if expiry == "expire_token":
            fake.expire_token(interaction.token)
        else:
            await asyncio.sleep(0.4)
        probe.release.set()
        await asyncio.wait_for(probe.done.wait(), 5)
        assert [(e.status, e.code) for e in probe.errors] == [(401, 50027)]
        fallback = await fake.wait_for_message(lambda m: "late result" in m.content)
        assert fallback.interaction_id is None
        assert f"<@{fake.member.user.id}>" in fallback.content
        assert [v.kind for v in fake.state.violations] == ["expired_token"]


async def test_buttons_update_their_own_message(fake_discord: FakeDiscord, probe: Probe) -> None:
    async with run_bot(make_bot(probe), fake_discord):
        message = await (await fake_discord.slash("flipper")).wait_original()
        turn_on = await fake_discord.click(message, "flip:0")
        assert (await turn_on.response()).type == 7
        await fake_discord.wait_for(lambda _: message.custom_ids() == ["flip:1"])
        turn_off = await fake_discord.click(message, "flip:1")
        assert (await turn_off.response()).type == 6
        await fake_discord.wait_for(lambda _: message.content == "off again")
        assert [r.content for r in message.history] == ["off", "on", "off again"]
        assert message.custom_ids() == ["flip:0"]
        assert len(fake_discord.messages_in()) == 1


async def test_attachment_size_limit() -> None:
    probe = Probe()
    async with FakeDiscord(FakeConfig(attachment_size_limit=1000)) as fake, run_bot(make_bot(probe), fake):
        await fake.slash("big", {"size": 1001})
        await asyncio.wait_for(probe.done.wait(), 5)
        probe.done.clear()
        await fake.slash("big", {"size": 1000})
        await asyncio.wait_for(probe.done.wait(), 5)
        assert [(e.status, e.code) for e in probe.errors] == [(413, 40005)]
        # The failed upload left its "thinking" placeholder; the second filled its own.
        assert [(m.loading, [a.size for a in m.attachments]) for m in fake.messages_in()] == [
            (True, []),
            (False, [1000]),
        ]
        assert [v.kind for v in fake.state.violations] == ["attachment_too_large"]


async def test_member_chunks_and_bad_token(fake_discord: FakeDiscord) -> None:
    intents = discord.Intents.default()
    intents.members = True
    bot = commands.Bot(command_prefix="!", intents=intents)
    async with run_bot(bot, fake_discord, require_sync=False):
        guild = bot.get_guild(fake_discord.guild.id)
        assert guild is not None
        found = await guild.query_members(user_ids=[fake_discord.other_member.user.id])
        assert [m.name for m in found] == ["bob"]
        assert fake_discord.state.member_requests

    async with FakeDiscord(FakeConfig(bot_token="right")) as fake:
        with pytest.raises(AssertionError, match="LoginFailure"):
            await _start_with_token(fake, "wrong")


async def _start_with_token(fake: FakeDiscord, token: str) -> None:
    async with run_bot(commands.Bot(command_prefix="!", intents=discord.Intents.none()), fake, token=token):
        pass


async def test_late_ack_is_a_violation() -> None:
    async with FakeDiscord(FakeConfig(ack_deadline_s=0.2)) as fake:
        async with run_bot(make_bot(Probe()), fake) as running:
            interaction = await fake.slash("slow", {"delay": 0.4})
            error = await running.wait_for_error(timeout=3)
            assert "10062" in str(error.error)
            running.take_errors()
            assert not interaction.acknowledged
        assert [v.kind for v in fake.state.violations] == ["late_ack"]


async def test_handler_exception_fails_run_bot(fake_discord: FakeDiscord, probe: Probe) -> None:
    async def run() -> None:
        async with run_bot(make_bot(probe), fake_discord) as running:
            await fake_discord.slash("boom")
            await running.wait_for_error(timeout=3)

    with pytest.raises(AssertionError, match="boom"):
        await run()


async def test_heartbeats_are_recorded() -> None:
    async with FakeDiscord(FakeConfig(heartbeat_interval_ms=50)) as fake:
        async with run_bot(make_bot(Probe()), fake):
            await fake.wait_for(lambda s: len(s.heartbeats) >= 4, timeout=3)
        gap = fake.state.max_heartbeat_gap()
        assert 0 < gap < 1.0


async def test_limits_are_answered_with_discord_errors(fake_discord: FakeDiscord, probe: Probe) -> None:
    async with run_bot(make_bot(probe), fake_discord):
        for what in ("content", "custom_id"):
            probe.done.clear()
            await fake_discord.slash("toolong", {"what": what})
            await asyncio.wait_for(probe.done.wait(), 5)
    assert [(e.status, e.code) for e in probe.errors] == [(400, 50035), (400, 50035)]
    assert "2000 or fewer" in str(probe.errors[0])
    assert "custom_id" in str(probe.errors[1])
    kinds = [v.detail for v in fake_discord.state.violations]
    assert len(kinds) == 2
    assert "content" in kinds[0]
    assert "components.0.components.0.custom_id" in kinds[1]


async def test_injected_failures(fake_discord: FakeDiscord, probe: Probe) -> None:
    async with run_bot(make_bot(probe), fake_discord):
        fake_discord.fail_next("POST /channels/*/messages", status=429)
        await fake_discord.slash("post")
        await asyncio.wait_for(probe.done.wait(), 5)
        assert probe.errors == []  # discord.py waited retry_after and retried
        posted = [
            r for r in fake_discord.state.requests if r.path.endswith("/messages") and r.method == "POST"
        ]
        assert [r.status for r in posted] == [429, 200]

        probe.done.clear()
        fake_discord.fail_next("/channels/*/messages", status=503)
        await fake_discord.slash("post")
        await asyncio.wait_for(probe.done.wait(), 5)
        assert [e.status for e in probe.errors] == [503]
        assert [m.content for m in fake_discord.messages_in()].count("posted") == 1


async def test_subcommand_options_resolved_and_permissions(fake_discord: FakeDiscord, probe: Probe) -> None:
    async with run_bot(make_bot(probe), fake_discord):
        guild = fake_discord.guild
        admin_role = guild.roles[1]
        options = {
            "user": fake_discord.member,
            "role": admin_role,
            "channel": "other",
            "count": 41,
            "flag": True,
        }
        with pytest.raises(FakeDiscordError, match="needs permissions"):
            await fake_discord.slash("settings grant", options, user=fake_discord.member)
        interaction = await fake_discord.slash(
            "settings grant", options, user=fake_discord.member, permissions=MANAGE_GUILD
        )
        message = await interaction.wait_original()
        assert message.content == "alice Admin other 42 True True"
        with pytest.raises(FakeDiscordError, match="no option"):
            await fake_discord.slash("settings grant", {**options, "bogus": 1}, user=fake_discord.admin)


async def test_unknown_routes_are_recorded_and_fail_run_bot(fake_discord: FakeDiscord) -> None:
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.none())
    async with run_bot(bot, fake_discord, require_sync=False, allow_unknown_routes=True) as running:
        with pytest.raises(discord.NotFound):
            await running.bot.http.request(discord.http.Route("GET", "/no/such/route"))
    assert [(r.method, r.path) for r in fake_discord.state.unknown_routes] == [("GET", "/no/such/route")]

    async def strict() -> None:
        bot = commands.Bot(command_prefix="!", intents=discord.Intents.none())
        async with run_bot(bot, fake_discord, require_sync=False) as running:
            with pytest.raises(discord.NotFound):
                await running.bot.http.request(discord.http.Route("GET", "/also/missing"))

    with pytest.raises(AssertionError, match="GET /also/missing"):
        await strict()


SUBPROCESS_BOT = """
import asyncio, discord
from discord.ext import commands

async def main():
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.none())

    @bot.tree.command(description="ping")
    async def ping(interaction):
        await interaction.response.send_message("pong from " + str(discord.http.Route.BASE))

    async def setup_hook():
        await bot.tree.sync()

    bot.setup_hook = setup_hook
    await bot.start("t", reconnect=False)

asyncio.run(main())
"""


async def test_sitecustomize_redirects_a_killed_subprocess(fake_discord: FakeDiscord) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "fakediscord/sitecustomize"),
        "FAKE_DISCORD_URL": fake_discord.url,
    }
    for run in (1, 2):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SUBPROCESS_BOT, env=env, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            await fake_discord.wait_until_synced(count=run, timeout=30)
            message = await (await fake_discord.slash("ping")).wait_original()
            assert message.content == f"pong from {fake_discord.api_url}"
        finally:
            proc.kill()
            await proc.wait()

        # The killed client's connection is dropped cleanly; a restarted one identifies again.
        def dropped(state: FakeState, closed: int = run) -> bool:
            return state.gateway_closed == closed and not fake_discord.sessions

        await fake_discord.wait_for(dropped)
    assert len(fake_discord.state.identifies) == 2
    assert fake_discord.state.unknown_routes == []


async def test_user_messages_and_message_events(fake_discord: FakeDiscord) -> None:
    intents = discord.Intents.default()
    intents.message_content = True
    bot = commands.Bot(command_prefix="!", intents=intents)

    @bot.command()
    async def echo(ctx: commands.Context[commands.Bot], word: str) -> None:
        await ctx.send(word)
        await ctx.author.send(f"psst {word}")

    async with run_bot(bot, fake_discord, require_sync=False):
        await fake_discord.post_as_user("!echo hi", user=fake_discord.member)
        reply = await fake_discord.wait_for_message(lambda m: m.author == fake_discord.bot_user)
        assert reply.content == "hi"
        dm = fake_discord.dm_channel(fake_discord.member.user)
        assert (await fake_discord.wait_for_message(channel=dm)).content == "psst hi"
        # The bot's own message came back over the gateway as MESSAGE_CREATE, as on Discord.
        await fake_discord.wait_for(lambda _: any(m.id == reply.id for m in bot.cached_messages))


async def test_message_content_intent_is_respected(fake_discord: FakeDiscord) -> None:
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.default())
    seen: list[str] = []

    @bot.listen()
    async def on_message(message: discord.Message) -> None:
        seen.append(message.content)

    async with run_bot(bot, fake_discord, require_sync=False):
        await fake_discord.post_as_user("private words")
        mention = f"<@{fake_discord.bot_user.id}> hello"
        await fake_discord.post_as_user(mention)
        await fake_discord.wait_for(lambda _: len(seen) == 2)
    assert seen == ["", mention]
