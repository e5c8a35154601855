"""Self-tests of the fake Discord, driving a small throwaway bot defined here."""

from __future__ import annotations

import io
import re
from typing import Any

import discord
from discord.ext import commands

from tests.fakediscord.harness import run_bot
from tests.fakediscord.server import FakeDiscord

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


class CountButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"count:(?P<n>\d+)"):
    """A persistent button whose state lives in its custom_id."""

    def __init__(self, n: int) -> None:
        super().__init__(discord.ui.Button(label=f"count {n}", custom_id=f"count:{n}"))
        self.n = n

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button[Any], match: re.Match[str], /
    ) -> CountButton:
        return cls(int(match["n"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        view = discord.ui.View(timeout=None).add_item(CountButton(self.n + 1))
        await interaction.response.send_message(f"clicked {self.n}", view=view)


def make_bot() -> commands.Bot:
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.default())

    @bot.tree.command(description="reply with a file")
    async def picture(interaction: discord.Interaction, name: str) -> None:
        view = discord.ui.View(timeout=None).add_item(CountButton(0))
        await interaction.response.send_message(
            f"here is {name}", file=discord.File(io.BytesIO(PNG), filename=f"{name}.png"), view=view
        )

    async def setup_hook() -> None:
        bot.add_dynamic_items(CountButton)
        await bot.tree.sync()

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    return bot


async def test_startup_sync_and_slash_with_file(fake_discord: FakeDiscord) -> None:
    async with run_bot(make_bot(), fake_discord):
        assert [c["name"] for c in fake_discord.state.commands()] == ["picture"]
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

        click = await fake_discord.click(message, "count:0")
        await click.response()
        reply = click.original()
        assert reply is not None
        assert reply.content == "clicked 0"
        assert reply.custom_ids() == ["count:1"]
    assert fake_discord.state.unknown_routes == []
    assert fake_discord.state.violations == []
