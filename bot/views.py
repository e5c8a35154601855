"""Persistent buttons and the remix modal.

Every button's state lives in its `custom_id` (job id and cell), so buttons on messages posted
before a restart keep working once `setup_hook` registers these classes with `add_dynamic_items`.
The callbacks only parse and hand over; `ButtonHandler` (the buttons cog) does the work.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import discord

from bot.jobs import ButtonAction

__all__ = [
    "DYNAMIC_ITEMS",
    "ButtonAction",
    "ButtonHandler",
    "GridButton",
    "RemixModal",
    "SettingsButton",
    "SettingsHandler",
    "SettingsSelect",
    "grid_custom_id",
]

_JOB = r"[0-9a-f]{32}"


class ButtonHandler(Protocol):
    """What the job buttons and the remix modal call into (the buttons cog)."""

    async def on_job_button(
        self, interaction: discord.Interaction[Any], action: ButtonAction, job_id: str, cell: int
    ) -> None: ...

    async def on_remix_submit(
        self, interaction: discord.Interaction[Any], action: ButtonAction, job_id: str, cell: int, prompt: str
    ) -> None: ...


class SettingsHandler(Protocol):
    """What the /settings panel calls into (the settings cog)."""

    async def on_settings_choice(
        self, interaction: discord.Interaction[Any], key: str, value: str
    ) -> None: ...


def _handler(interaction: discord.Interaction[Any]) -> ButtonHandler:
    handler: ButtonHandler | None = getattr(interaction.client, "button_handler", None)
    if handler is None:
        raise RuntimeError("the buttons cog is not loaded")
    return handler


def _settings_handler(interaction: discord.Interaction[Any]) -> SettingsHandler:
    handler: SettingsHandler | None = getattr(interaction.client, "settings_handler", None)
    if handler is None:
        raise RuntimeError("the settings cog is not loaded")
    return handler


def grid_custom_id(action: ButtonAction, job_id: str, cell: int) -> str:
    return f"ib:{action.value}:{job_id}:{cell}"


def _label(action: ButtonAction, cell: int) -> tuple[str | None, str | None]:
    """(label, emoji) as Midjourney shows them."""
    if action is ButtonAction.UPSCALE:
        return f"U{cell}", None
    if action is ButtonAction.VARIATION:
        return f"V{cell}", None
    if action is ButtonAction.VARY_STRONG:
        return "Vary (Strong)", "🪄"
    if action is ButtonAction.VARY_SUBTLE:
        return "Vary (Subtle)", "🪄"
    return None, "🔄"


class GridButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=rf"ib:(?P<action>u|v|r|vs|vt):(?P<job>{_JOB}):(?P<cell>[0-4])",
):
    """U1–U4, V1–V4, 🔄 under a grid; Vary (Strong/Subtle) under an upscale."""

    def __init__(self, action: ButtonAction, job_id: str, cell: int, *, row: int | None = None) -> None:
        label, emoji = _label(action, cell)
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=emoji,
                style=discord.ButtonStyle.secondary,
                custom_id=grid_custom_id(action, job_id, cell),
            ),
            row=row,
        )
        self.action = action
        self.job_id = job_id
        self.cell = cell

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> GridButton:
        return cls(ButtonAction(match["action"]), match["job"], int(match["cell"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _handler(interaction).on_job_button(interaction, self.action, self.job_id, self.cell)


class SettingsButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"ibset:(?P<key>remix|stylize|ar|reset):(?P<value>[0-9A-Za-z:._-]{1,20})",
):
    """A button of the /settings panel; the value it sets is in its custom_id."""

    def __init__(
        self, key: str, value: str, *, label: str, active: bool = False, row: int | None = None
    ) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.success if active else discord.ButtonStyle.secondary,
                custom_id=f"ibset:{key}:{value}",
            ),
            row=row,
        )
        self.key = key
        self.value = value

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SettingsButton:
        return cls(match["key"], match["value"], label=getattr(item, "label", None) or match["value"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _settings_handler(interaction).on_settings_choice(interaction, self.key, self.value)


class SettingsSelect(discord.ui.DynamicItem[discord.ui.Select[Any]], template=r"ibset:model"):
    """The model alias picker of the /settings panel."""

    def __init__(self, options: list[discord.SelectOption] | None = None, *, row: int | None = None) -> None:
        super().__init__(
            discord.ui.Select(
                custom_id="ibset:model",
                placeholder="Model",
                options=options or [discord.SelectOption(label="default", value="default")],
            ),
            row=row,
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SettingsSelect:
        return cls()

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        values = self.item.values or ["default"]
        await _settings_handler(interaction).on_settings_choice(interaction, "model", values[0])


class RemixModal(discord.ui.Modal):
    """Remix mode: edit the prompt before a variation runs."""

    prompt: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
        label="New prompt for the variation", style=discord.TextStyle.paragraph, max_length=2000
    )

    def __init__(self, action: ButtonAction, job_id: str, cell: int, current_prompt: str) -> None:
        super().__init__(title="Remix", custom_id=f"ibremix:{action.value}:{job_id}:{cell}", timeout=900)
        self.action = action
        self.job_id = job_id
        self.cell = cell
        self.prompt.default = current_prompt[:2000]

    async def on_submit(self, interaction: discord.Interaction[Any], /) -> None:
        await _handler(interaction).on_remix_submit(
            interaction, self.action, self.job_id, self.cell, self.prompt.value
        )


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (GridButton, SettingsButton, SettingsSelect)
"""Register with `bot.add_dynamic_items(*DYNAMIC_ITEMS)`."""
