"""Custom Zoom's `--zoom`: taken out of the box's text before the rest is parsed; refused in /imagine."""

from __future__ import annotations

import pytest

from bot.prompt import PromptError, parse, take_zoom


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a lighthouse --zoom 2", ("a lighthouse", 2.0)),
        ("a lighthouse --zoom 1.5 --ar 16:9", ("a lighthouse --ar 16:9", 1.5)),
        ("a lighthouse --ar 16:9 --ZOOM  1.01", ("a lighthouse --ar 16:9", 1.01)),
        ("a lighthouse \u2014zoom .5e0", None),
        ("a lighthouse \u2014zoom 1.25", ("a lighthouse", 1.25)),
    ],
)
def test_take_zoom_returns_the_prompt_without_it(text: str, expected: tuple[str, float] | None) -> None:
    if expected is None:
        with pytest.raises(PromptError, match="above 1 and at most 2"):
            take_zoom(text)
    else:
        assert take_zoom(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a lighthouse", "Custom Zoom needs `--zoom`"),
        ("a lighthouse --zoomed 2", "Custom Zoom needs `--zoom`"),
        ("a lighthouse --zoom", "got nothing"),
        ("a lighthouse --zoom 1", "above 1 and at most 2"),
        ("a lighthouse --zoom 2.5", "got `2.5`"),
        ("a lighthouse --zoom 2 --zoom 1.5", "given twice"),
    ],
)
def test_take_zoom_refuses_what_custom_zoom_cannot_do(text: str, message: str) -> None:
    with pytest.raises(PromptError, match=message):
        take_zoom(text)


def test_imagine_refuses_zoom_and_says_where_it_belongs() -> None:
    with pytest.raises(PromptError, match="only works in the Custom Zoom box") as caught:
        parse("a lighthouse --zoom 2")
    assert caught.value.parameter == "--zoom"
