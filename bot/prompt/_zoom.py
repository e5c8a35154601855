"""`--zoom`: the parameter of Custom Zoom's box only, taken out before the rest is parsed as a prompt.

Private to `bot.prompt`. `/imagine` refuses `--zoom` (`_parameters`); Custom Zoom's text must carry it.
"""

from __future__ import annotations

import re

from bot.prompt._lexer import PromptError, normalise_dashes, normalise_space, quote
from engine.edits import MAX_ZOOM

__all__ = ["MAX_ZOOM", "take_zoom"]

# `--zoom` as a whole word, then its value up to the next parameter or the end.
_ZOOM = re.compile(r"(?<!\S)--zoom(?![^\s])(?P<value>.*?)(?=\s--|\Z)", re.IGNORECASE | re.DOTALL)
_NUMBER = re.compile(r"\d{1,10}(?:\.\d{1,10})?|\.\d{1,10}")


def take_zoom(text: str) -> tuple[str, float]:
    """Custom Zoom's text as (the prompt without `--zoom`, the zoom factor); raise `PromptError` when
    `--zoom` is missing, given twice, or not a number above 1 and at most 2."""
    text = normalise_dashes(text)
    found = list(_ZOOM.finditer(text))
    if not found:
        raise PromptError(
            "Custom Zoom needs `--zoom` with how far to zoom out, from above 1 to 2: "
            "like `a lighthouse at dusk --zoom 1.5`.",
            parameter="--zoom",
        )
    if len(found) > 1:
        raise PromptError("`--zoom` is given twice; keep one.", parameter="--zoom")
    match = found[0]
    value = normalise_space(match["value"])
    if not (_NUMBER.fullmatch(value) and 1 < float(value) <= MAX_ZOOM):
        raise PromptError(
            f"`--zoom` takes a number above 1 and at most {MAX_ZOOM:g}, like 1.5 (2 zooms out twice as far); "
            f"got {quote(value) if value else 'nothing'}.",
            parameter="--zoom",
        )
    rest = normalise_space(text[: match.start()] + " " + text[match.end() :])
    return rest, float(value)
