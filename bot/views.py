"""Persistent components and the views they make up: the job buttons, Vary (Region)'s select, the prompt
box (remix, Custom Zoom, Vary (Region)), the /settings panel.

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
    "JobButton",
    "PromptModal",
    "RegionSelect",
    "SettingsButton",
    "SettingsSelect",
    "region_picker",
    "result_view",
    "settings_panel",
]

_JOB = r"[0-9a-f]{32}"

Interaction = discord.Interaction[Any]


def _bot(interaction: Interaction) -> ImagineBot:
    """The bot these components are registered on (they are only ever added by `ImagineBot`)."""
    return cast("ImagineBot", interaction.client)


# --- job buttons ------------------------------------------------------------------------------

_LABELS: dict[ButtonAction, tuple[str | None, str | None]] = {
    ButtonAction.REROLL: (None, "🔄"),
    ButtonAction.UPSCALE_SUBTLE: ("Upscale (Subtle)", None),
    ButtonAction.UPSCALE_CREATIVE: ("Upscale (Creative)", None),
    ButtonAction.VARY_SUBTLE: ("Vary (Subtle)", "🪄"),
    ButtonAction.VARY_STRONG: ("Vary (Strong)", "🪄"),
    ButtonAction.VARY_REGION: ("Vary (Region)", "🖌️"),
    ButtonAction.ZOOM_OUT_2X: ("Zoom Out 2x", "🔍"),
    ButtonAction.ZOOM_OUT_1_5X: ("Zoom Out 1.5x", "🔍"),
    ButtonAction.CUSTOM_ZOOM: ("Custom Zoom", "🔍"),
    ButtonAction.MAKE_SQUARE: ("Make Square", "↔️"),
    ButtonAction.PAN_LEFT: (None, "⬅️"),
    ButtonAction.PAN_RIGHT: (None, "➡️"),
    ButtonAction.PAN_UP: (None, "⬆️"),
    ButtonAction.PAN_DOWN: (None, "⬇️"),
}
"""(label, emoji) as Midjourney shows them; U1–U4 and V1–V4 are named by their cell."""

_ACTIONS = "|".join(action.value for action in ButtonAction)
_ZOOM_PREFILL = " --zoom 2"
"""What Custom Zoom's box adds to the prompt, as Midjourney prefills it."""


def _label(action: ButtonAction, cell: int) -> tuple[str | None, str | None]:
    if action is ButtonAction.UPSCALE:
        return f"U{cell}", None
    if action is ButtonAction.VARIATION:
        return f"V{cell}", None
    return _LABELS[action]


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=rf"ib:(?P<action>{_ACTIONS}):(?P<job>{_JOB}):(?P<cell>[0-4])",
):
    """A job button: U1–U4, V1–V4, 🔄 under a grid; Upscale (Subtle/Creative), Vary (Subtle/Strong/Region),
    Zoom Out, Custom Zoom, Make Square and the pans under an upscale. Each press is a new job."""

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
    ) -> JobButton:
        return cls(ButtonAction(match["action"]), match["job"], int(match["cell"]))

    async def callback(self, interaction: Interaction) -> None:
        async with reporting(interaction):
            jobs, who = _bot(interaction).jobs, requester(interaction)
            action, job_id, cell = self.action, self.job_id, self.cell
            # What asks the member something first is refused (engine, owner-only, size) before it asks.
            if action is ButtonAction.VARY_REGION:
                await jobs.check_press(who, action, job_id, cell)
                await interaction.response.send_message(
                    render.region_picker_content(), view=region_picker(job_id, cell), ephemeral=True
                )
                return
            if action is ButtonAction.CUSTOM_ZOOM:
                prompt = await jobs.check_press(who, action, job_id, cell)
                await interaction.response.send_modal(
                    PromptModal(action, job_id, cell, prompt + _ZOOM_PREFILL)
                )
                return
            if action.remixable and await jobs.wants_remix(interaction.user.id):
                prompt = await jobs.check_press(who, action, job_id, cell)
                await interaction.response.send_modal(PromptModal(action, job_id, cell, prompt))
                return
            ticket = await jobs.press(who, action, job_id, cell)
            await answer_with_jobs(interaction, [ticket])


def _modal_words(action: ButtonAction) -> tuple[str, str]:
    """(title, field label) of the prompt box a press opens."""
    if action is ButtonAction.CUSTOM_ZOOM:
        return "Custom Zoom", "Prompt, and --zoom above 1 and at most 2"
    if action is ButtonAction.VARY_REGION:
        return "Vary (Region)", "What goes in the region (blank: the prompt)"
    if action.is_edit:
        return "Remix", "Prompt for the new area"
    return "Remix", "New prompt for the variation"


class PromptModal(discord.ui.Modal):
    """The prompt box a press opens first: remix mode's, Custom Zoom's (with its `--zoom`), and
    Vary (Region)'s (whose cells, picked in the select before, ride in the custom_id)."""

    def __init__(
        self,
        action: ButtonAction,
        job_id: str,
        cell: int,
        current_prompt: str,
        *,
        region: Sequence[int] = (),
    ) -> None:
        cells = ":" + "".join(str(c) for c in region) if region else ""
        title, label = _modal_words(action)
        super().__init__(title=title, custom_id=f"ibremix:{action.value}:{job_id}:{cell}{cells}", timeout=900)
        self.action = action
        self.job_id = job_id
        self.cell = cell
        self.region = tuple(region)
        self.prompt: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
            label=label,
            style=discord.TextStyle.paragraph,
            default=current_prompt[:2000],
            required=action is not ButtonAction.VARY_REGION,
            max_length=2000,
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: Interaction, /) -> None:
        async with reporting(interaction):
            text: str | None = self.prompt.value
            if self.action is ButtonAction.VARY_REGION and not (text or "").strip():
                text = None  # left blank: the job's own prompt
            ticket = await _bot(interaction).jobs.press(
                requester(interaction),
                self.action,
                self.job_id,
                self.cell,
                remix_text=text,
                region=self.region,
            )
            await answer_with_jobs(interaction, [ticket])


class RegionSelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=rf"ibregion:(?P<job>{_JOB}):(?P<cell>[0-4])",
):
    """Vary (Region)'s picker: the cells of a 3x3 grid over the image (several allowed); then the prompt."""

    def __init__(self, job_id: str, cell: int, *, row: int | None = None) -> None:
        options = [
            discord.SelectOption(label=name, value=str(number))
            for number, name in enumerate(render.REGION_CELL_NAMES, start=1)
        ]
        super().__init__(
            discord.ui.Select(
                custom_id=f"ibregion:{job_id}:{cell}",
                placeholder="The parts to repaint",
                min_values=1,
                max_values=len(options),
                options=options,
            ),
            row=row,
        )
        self.job_id = job_id
        self.cell = cell

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> RegionSelect:
        return cls(match["job"], int(match["cell"]))

    async def callback(self, interaction: Interaction) -> None:
        async with reporting(interaction):
            action = ButtonAction.VARY_REGION
            cells = sorted({int(value) for value in self.item.values if value.isdigit()})
            prompt = await _bot(interaction).jobs.check_press(
                requester(interaction), action, self.job_id, self.cell
            )
            await interaction.response.send_modal(
                PromptModal(action, self.job_id, self.cell, prompt, region=cells)
            )


def region_picker(job_id: str, cell: int) -> discord.ui.View:
    """Vary (Region)'s select, for the member's eyes only."""
    view = discord.ui.View(timeout=None)
    view.add_item(RegionSelect(job_id, cell))
    view.stop()  # answered by the registered `RegionSelect`, as the job buttons are
    return view


def grid_view(job_id: str) -> discord.ui.View:
    """U1–U4, V1–V4 and 🔄 in Midjourney's layout."""
    view = discord.ui.View(timeout=None)
    for cell in range(1, 5):
        view.add_item(JobButton(ButtonAction.UPSCALE, job_id, cell, row=0))
    view.add_item(JobButton(ButtonAction.REROLL, job_id, 0, row=0))
    for cell in range(1, 5):
        view.add_item(JobButton(ButtonAction.VARIATION, job_id, cell, row=1))
    return view


_UNDER_AN_UPSCALE = (
    (ButtonAction.UPSCALE_SUBTLE, ButtonAction.UPSCALE_CREATIVE),
    (ButtonAction.VARY_SUBTLE, ButtonAction.VARY_STRONG, ButtonAction.VARY_REGION),
    (
        ButtonAction.ZOOM_OUT_2X,
        ButtonAction.ZOOM_OUT_1_5X,
        ButtonAction.CUSTOM_ZOOM,
        ButtonAction.MAKE_SQUARE,
    ),
    (ButtonAction.PAN_LEFT, ButtonAction.PAN_RIGHT, ButtonAction.PAN_UP, ButtonAction.PAN_DOWN),
)
"""Midjourney's rows under an upscale; the Web link goes last."""


def upscale_view(card: JobCard, *, edits: bool) -> discord.ui.View:
    """The buttons under an upscale, a link back to the grid last. Without `edits` (an engine that cannot
    paint) the editing tools are left out; Make Square only shows under an image that is not square."""
    view = discord.ui.View(timeout=None)
    square = card.image_size is None or card.image_size[0] == card.image_size[1]
    for row, actions in enumerate(_UNDER_AN_UPSCALE):
        for action in actions:
            if (action.is_edit and not edits) or (action is ButtonAction.MAKE_SQUARE and square):
                continue
            view.add_item(JobButton(action, card.job_id, 1, row=row))
    if card.source_url:
        view.add_item(discord.ui.Button(label="Web", emoji="🔗", url=card.source_url, row=4))
    return view


def result_view(card: JobCard, *, edits: bool) -> discord.ui.View:
    """The buttons under a finished job's images; `edits`: the job's engine can paint
    (`JobService.capabilities`).

    The view is stopped: it still renders, but discord.py keeps no copy per message in memory; the
    registered `DynamicItem` classes answer the clicks instead.
    """
    view = upscale_view(card, edits=edits) if card.kind is JobKind.UPSCALE else grid_view(card.job_id)
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


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    JobButton,
    RegionSelect,
    SettingsButton,
    SettingsSelect,
)
"""Register with `bot.add_dynamic_items(*DYNAMIC_ITEMS)`."""
