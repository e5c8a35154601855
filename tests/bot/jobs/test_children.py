"""What the bot expects an edit to measure is what the engine paints."""

from __future__ import annotations

import pytest
from PIL import Image

from bot.errors import BotError
from bot.jobs._children import EDIT_MULTIPLE, check_fits, output_size
from bot.jobs.types import ButtonAction
from engine.edits import canvas_for, parse_edit

EDITS = {
    ButtonAction.ZOOM_OUT_2X: "zoom 2",
    ButtonAction.PAN_LEFT: "pan left",
    ButtonAction.PAN_UP: "pan up",
    ButtonAction.MAKE_SQUARE: "square",
}


SIZES = [(64, 64), (72, 56), (128, 72), (1344, 768)]


@pytest.mark.parametrize(
    ("action", "size"),
    # Make Square of a square image is refused before it gets here (below).
    [(a, s) for a in EDITS for s in SIZES if not (a is ButtonAction.MAKE_SQUARE and s[0] == s[1])],
)
def test_the_expected_size_is_the_engines_canvas(action: ButtonAction, size: tuple[int, int]) -> None:
    painted = canvas_for(
        Image.new("RGB", size), parse_edit(EDITS[action]), multiple=EDIT_MULTIPLE, max_side=2048
    )
    assert output_size(action, size, 2048) == painted.size


def test_a_pan_near_the_cap_grows_as_far_as_the_engine_does_and_no_further() -> None:
    assert output_size(ButtonAction.PAN_LEFT, (2000, 512), 2048) == (2048, 512)
    with pytest.raises(BotError, match="cannot pan left"):
        check_fits(ButtonAction.PAN_LEFT, (2048, 512), 2048)
    with pytest.raises(BotError, match="already square"):
        check_fits(ButtonAction.MAKE_SQUARE, (64, 64), 2048)
