"""Persistent components and the views they make up: the job buttons, the remix modal, the /settings panel.

Every component's state lives in its `custom_id` (job id and cell, or the setting and its value),
so components on messages posted before a restart keep working once `setup_hook` registers these
classes with `add_dynamic_items`. Each does its own work through `interaction.client` (the
`ImagineBot` with its job service and database) and reports failures with `bot.replies.reporting`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import discord

from bot import render
from bot.jobs import ButtonAction, JobCard
from bot.replies import answer_with_jobs, reporting, requester
from bot.store import queries as q
from bot.store.models import JobKind, UserPreferences

if TYPE_CHECKING:
    from bot.client import ImagineBot

__all__ = [
    "DYNAMIC_ITEMS",
    "GridButton",
    "RemixModal",
    "SettingsButton",
    "SettingsSelect",
    "result_view",
    "settings_panel",
]

_JOB = r"[0-9a-f]{32}"

Interaction = discord.Interaction[Any]


def _bot(interaction: Interaction) -> ImagineBot:
    """The bot these components are registered on (they are only ever added by `ImagineBot`)."""
    return cast("ImagineBot", interaction.client)


# --- job buttons ------------------------------------------------------------------------------


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
    """U1–U4, V1–V4, 🔄 under a grid; Vary (Strong/Subtle) under an upscale. Each press is a new job."""

    def __init__(self, action: ButtonAction, job_id: str, cell: int, *, row: int | None = None) -> None:
        label, emoji = _label(action, cell)
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=emoji,
                style=discord.ButtonStyle.secondary,
                custom_id=f"ib:{action.value}:{job_id}:{cell}",
            ),
            row=row,
        )
        self.action = action
        self.job_id = job_id
        self.cell = cell

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> GridButton:
        return cls(ButtonAction(match["action"]), match["job"], int(match["cell"]))

    async def callback(self, interaction: Interaction) -> None:
        async with reporting(interaction):
            jobs = _bot(interaction).jobs
            if self.action.is_variation and await jobs.wants_remix(interaction.user.id):
                job = await jobs.get(self.job_id)
                await interaction.response.send_modal(
                    RemixModal(self.action, self.job_id, self.cell, job.prompt)
                )
                return
            ticket = await jobs.press(requester(interaction), self.action, self.job_id, self.cell)
            await answer_with_jobs(interaction, [ticket])


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

    async def on_submit(self, interaction: Interaction, /) -> None:
        async with reporting(interaction):
            who, text = requester(interaction), self.prompt.value
            ticket = await interaction.client.jobs.press(
                who, self.action, self.job_id, self.cell, remix_text=text
            )
            await answer_with_jobs(interaction, [ticket])


def grid_view(job_id: str) -> discord.ui.View:
    """U1–U4, V1–V4 and 🔄 in Midjourney's layout."""
    view = discord.ui.View(timeout=None)
    for cell in range(1, 5):
        view.add_item(GridButton(ButtonAction.UPSCALE, job_id, cell, row=0))
    view.add_item(GridButton(ButtonAction.REROLL, job_id, 0, row=0))
    for cell in range(1, 5):
        view.add_item(GridButton(ButtonAction.VARIATION, job_id, cell, row=1))
    return view


def upscale_view(job_id: str, source_url: str | None) -> discord.ui.View:
    """Vary (Strong), Vary (Subtle) and a link back to the grid."""
    view = discord.ui.View(timeout=None)
    view.add_item(GridButton(ButtonAction.VARY_STRONG, job_id, 1, row=0))
    view.add_item(GridButton(ButtonAction.VARY_SUBTLE, job_id, 1, row=0))
    if source_url:
        view.add_item(discord.ui.Button(label="Web", emoji="🔗", url=source_url, row=0))
    return view


def result_view(card: JobCard) -> discord.ui.View:
    """The buttons under a finished job's images.

    The view is stopped: it still renders, but discord.py keeps no copy per message in memory; the
    registered `DynamicItem` classes answer the clicks instead.
    """
    view = (
        upscale_view(card.job_id, card.source_url) if card.kind is JobKind.UPSCALE else grid_view(card.job_id)
    )
    view.stop()
    return view


# --- the /settings panel ----------------------------------------------------------------------

_PARAMETER = {"stylize": "stylize", "ar": "aspect"}
"""Panel keys → the prompt parameter (long name) they set a default for."""


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
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SettingsButton:
        return cls(match["key"], match["value"], label=getattr(item, "label", None) or match["value"])

    async def callback(self, interaction: Interaction) -> None:
        async with reporting(interaction):
            await _choose(interaction, self.key, self.value)


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
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SettingsSelect:
        return cls()

    async def callback(self, interaction: Interaction) -> None:
        async with reporting(interaction):
            await _choose(interaction, "model", (self.item.values or ["default"])[0])


async def _choose(interaction: Interaction, key: str, value: str) -> None:
    """Save one choice from the panel and redraw it."""
    user_id, bot = interaction.user.id, _bot(interaction)
    async with bot.db.session(urgent=True) as session:
        prefs = await q.get_user_preferences(session, user_id)
        if key == "remix":
            prefs = await q.update_user_preferences(session, user_id, remix=value == "on")
        elif key == "reset":
            prefs = await q.update_user_preferences(session, user_id, remix=False, defaults={}, model=None)
        elif key == "model":
            prefs = await q.update_user_preferences(
                session, user_id, model=None if value == "default" else value
            )
        elif key in _PARAMETER:
            defaults, name = dict(prefs.defaults or {}), _PARAMETER[key]
            # Pressing the active preset again clears it, as in Midjourney's panel.
            if defaults.get(name) == value:
                defaults.pop(name)
            else:
                defaults[name] = value
            prefs = await q.update_user_preferences(session, user_id, defaults=defaults)
        panel = settings_panel(prefs, list(bot.config.model_aliases))
    await interaction.response.edit_message(**panel)


def settings_panel(prefs: UserPreferences, model_aliases: Sequence[str]) -> dict[str, Any]:
    """Midjourney's /settings panel as message kwargs: presets and toggles as buttons, the model a select."""
    remix, defaults, model = bool(prefs.remix), dict(prefs.defaults or {}), prefs.model
    view = discord.ui.View(timeout=None)
    view.add_item(SettingsButton("remix", "off" if remix else "on", label="Remix mode", active=remix, row=0))
    view.add_item(SettingsButton("reset", "all", label="Reset settings", row=0))
    for label, value in render.STYLIZE_PRESETS:
        active = defaults.get("stylize") == value
        view.add_item(SettingsButton("stylize", value, label=label, active=active, row=1))
    for ratio in render.ASPECT_PRESETS:
        view.add_item(SettingsButton("ar", ratio, label=ratio, active=defaults.get("aspect") == ratio, row=2))
    options = [discord.SelectOption(label="Server default", value="default", default=model is None)]
    options += [
        discord.SelectOption(label=alias, value=alias, default=alias == model) for alias in model_aliases[:24]
    ]
    view.add_item(SettingsSelect(options, row=3))
    return {"content": render.settings_content(remix=remix, defaults=defaults, model=model), "view": view}


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (GridButton, SettingsButton, SettingsSelect)
"""Register with `bot.add_dynamic_items(*DYNAMIC_ITEMS)`."""
