"""What a button press makes from the job it was pressed on: U, V, Vary and 🔄 under a grid; Upscale
(Subtle/Creative), Zoom Out, Custom Zoom, Pan, Make Square and Vary (Region) under an upscale.

No Discord and no database: `JobService.press` loads the `Parent`, and stores and queues the `Planned`
job `plan_child` makes from it. An edit (`Mode.EDIT`) starts from the upscaled image itself and paints
four fills; `output_size` is what it (or a second upscale) will measure, checked against
`IMAGINE_MAX_SIDE` before anything is queued.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bot.errors import BotError
from bot.jobs.conversions import new_seed
from bot.jobs.types import ButtonAction
from bot.store.models import JobKind
from engine.edits import REGION_GRID, edited_size, parse_edit
from engine.errors import GenerationError
from engine.types import (
    GRID_SIZE,
    UPSCALE_CREATIVE,
    UPSCALE_SUBTLE,
    VARY_STRONG,
    VARY_SUBTLE,
    GenerationRequest,
    Mode,
)

__all__ = [
    "EDIT_MULTIPLE",
    "REGION_CELLS",
    "Parent",
    "Planned",
    "check_fits",
    "edit_of",
    "output_size",
    "plan_child",
]

EDIT_MULTIPLE = 8
"""The multiple the engine rounds an edit's sides to: 8 px latents in every diffusers family."""
REGION_CELLS = range(1, REGION_GRID * REGION_GRID + 1)
"""Vary (Region)'s cells: a 3x3 grid over the image, numbered row by row from the top left."""

_VARY = {"Strong": VARY_STRONG, "Subtle": VARY_SUBTLE}
_SECOND_UPSCALE = {
    ButtonAction.UPSCALE_SUBTLE: ("Subtle", UPSCALE_SUBTLE),
    ButtonAction.UPSCALE_CREATIVE: ("Creative", UPSCALE_CREATIVE),
}
_FIXED_EDITS = {
    ButtonAction.ZOOM_OUT_2X: "zoom 2",
    ButtonAction.ZOOM_OUT_1_5X: "zoom 1.5",
    ButtonAction.PAN_LEFT: "pan left",
    ButtonAction.PAN_RIGHT: "pan right",
    ButtonAction.PAN_UP: "pan up",
    ButtonAction.PAN_DOWN: "pan down",
    ButtonAction.MAKE_SQUARE: "square",
}
_EDIT_KINDS = {"zoom": JobKind.ZOOM, "pan": JobKind.PAN, "square": JobKind.SQUARE, "region": JobKind.REGION}
_DOING = {
    ButtonAction.UPSCALE_SUBTLE: "Upscaling it again",
    ButtonAction.UPSCALE_CREATIVE: "Upscaling it again",
    ButtonAction.ZOOM_OUT_2X: "Zooming out",
    ButtonAction.ZOOM_OUT_1_5X: "Zooming out",
    ButtonAction.CUSTOM_ZOOM: "Zooming out",
    ButtonAction.PAN_LEFT: "Panning",
    ButtonAction.PAN_RIGHT: "Panning",
    ButtonAction.PAN_UP: "Panning",
    ButtonAction.PAN_DOWN: "Panning",
    ButtonAction.MAKE_SQUARE: "Making it square",
    ButtonAction.VARY_REGION: "Varying a region",
}
"""How a refusal names what was asked."""
_PANS = {
    ButtonAction.PAN_LEFT: "left",
    ButtonAction.PAN_RIGHT: "right",
    ButtonAction.PAN_UP: "up",
    ButtonAction.PAN_DOWN: "down",
}


@dataclass(frozen=True, slots=True)
class Planned:
    """A job about to be stored and queued."""

    kind: JobKind
    prompt: str
    request: GenerationRequest
    parent_id: str | None = None
    parent_index: int | None = None
    init: str | None = None
    """The source image, relative to the data dir."""
    ui: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Parent:
    """The job a button was pressed on."""

    job_id: str
    cell: int
    prompt: str
    params: dict[str, Any]
    seeds: list[int]
    init: str | None
    """The pressed cell's image, relative to the data dir."""
    link: str | None
    """Its message, for the upscale's link back."""
    size: tuple[int, int] | None = None
    """(width, height) of the pressed cell's image, as the images table has it."""
    allow_flagged_input: bool = False
    """Whether the presser's channel and server let a job start from a picture the safety check flags."""


def edit_of(action: ButtonAction, *, zoom: float | None = None, region: Sequence[int] = ()) -> str:
    """The `GenerationRequest.edit` an editing button asks for; Custom Zoom's factor and Vary (Region)'s
    cells come from the member."""
    if action in _FIXED_EDITS:
        return _FIXED_EDITS[action]
    if action is ButtonAction.CUSTOM_ZOOM:
        if zoom is None:
            raise ValueError("Custom Zoom needs its zoom factor")
        return f"zoom {zoom:g}"
    if action is ButtonAction.VARY_REGION:
        cells = sorted(set(region))
        if not cells or any(cell not in REGION_CELLS for cell in cells):
            raise BotError("Pick at least one part of the image to repaint (cells 1 to 9 of a 3x3 grid).")
        return "region " + " ".join(str(cell) for cell in cells)
    raise ValueError(f"{action!r} is not an editing tool")


def output_size(action: ButtonAction, size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """What a second upscale or an edit of an image of `size` will measure: 2x, or the canvas the
    engine paints (`engine.edits.edited_size`: a pan adds half a side, less where `max_side` stops it,
    and `size` itself when it cannot grow; Make Square grows the short side to the long one)."""
    width, height = size
    if action.is_second_upscale:
        return 2 * width, 2 * height
    spec = _FIXED_EDITS.get(action)
    if spec is None:  # Custom Zoom and Vary (Region) keep the size
        return size
    edit = parse_edit(spec)
    try:
        return edited_size(size, edit, multiple=EDIT_MULTIPLE, max_side=max_side)
    except GenerationError:  # over `max_side`: the size it would have, for the refusal to name
        if action in _PANS:
            return size
        return edited_size(size, edit, multiple=EDIT_MULTIPLE, max_side=None)


def check_fits(action: ButtonAction, size: tuple[int, int] | None, max_side: int) -> None:
    """Refuse an edit or second upscale that would pass `IMAGINE_MAX_SIDE` (a pan that cannot grow at
    all under it), or a square image to make square."""
    if size is None or action not in _DOING:
        return
    if action is ButtonAction.MAKE_SQUARE and size[0] == size[1]:
        raise BotError("That image is already square; Make Square has nothing to add.")
    width, height = output_size(action, size, max_side)
    if action in _PANS and (width, height) == size:
        raise BotError(
            f"That image is already {width}×{height} pixels, and this bot makes nothing longer than "
            f"{max_side} pixels on a side (`IMAGINE_MAX_SIDE`), so it cannot pan {_PANS[action]}. "
            "Pan the other way, or start from a smaller image."
        )
    if max(width, height) > max_side:
        raise BotError(
            f"{_DOING[action]} would make the image {width}×{height} pixels, and this bot makes nothing "
            f"longer than {max_side} pixels on a side (`IMAGINE_MAX_SIDE`, which the bot's owner sets). "
            "Start from a smaller image."
        )


def plan_child(
    action: ButtonAction,
    parent: Parent,
    prompt: str,
    request: GenerationRequest,
    start: str | None,
    *,
    data_dir: Path,
    max_side: int,
    edit: str = "",
) -> Planned:
    """The job `action` makes from the parent's (or the remixed) `request`; `start` is that request's
    start image when it is an image prompt, `edit` what an editing tool paints (`edit_of`)."""
    source = data_dir / parent.init if parent.init else None
    origin = f"{parent.job_id}#{parent.cell}"
    # What the parent itself was (an edit, an upscale) is not what its child is.
    base = replace(request, edit="", max_side=None, parent=origin)
    if action is ButtonAction.REROLL:  # the same job again with a new seed (a variation stays one)
        init = {Mode.TEXT: None, Mode.IMAGE: start}.get(request.mode, parent.params.get("init"))
        again = replace(request, seed=new_seed(), init_image=data_dir / init if init else None)
        return Planned(JobKind.REROLL, prompt, again, parent.job_id, init=init)
    if action is ButtonAction.UPSCALE or action.is_second_upscale:
        cell = parent.cell
        seed = parent.seeds[cell - 1] if len(parent.seeds) >= cell else request.seed + cell - 1
        ui: dict[str, Any] = {"source_url": parent.link} if parent.link else {}
        strength = 0.0
        if action.is_second_upscale:
            seed = parent.seeds[0] if parent.seeds else request.seed
            ui["upscale"], strength = _SECOND_UPSCALE[action]
        upscale = replace(
            base,
            mode=Mode.UPSCALE,
            count=1,
            seed=seed,
            strength=strength,
            init_image=source,
            max_side=max_side if action.is_second_upscale else None,
        )
        return Planned(JobKind.UPSCALE, prompt, upscale, parent.job_id, cell, parent.init, ui)
    if action.is_edit:
        painted = replace(
            base,
            mode=Mode.EDIT,
            count=GRID_SIZE,
            seed=new_seed(),
            strength=0.0,
            init_image=source,
            edit=edit,
            max_side=max_side,
        )
        kind = _EDIT_KINDS[edit.split()[0]]
        return Planned(kind, prompt, painted, parent.job_id, parent.cell, parent.init)
    variation = replace(
        base,
        mode=Mode.VARIATION,
        count=GRID_SIZE,
        seed=new_seed(),
        strength=_VARY[action.variation],
        init_image=source,
    )
    ui = {"variation": action.variation}
    return Planned(JobKind.VARIATION, prompt, variation, parent.job_id, parent.cell, parent.init, ui)
