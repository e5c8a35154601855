"""The Midjourney prompt language: `/imagine` text in, a list of requests out.

`parse("https://x/cat.png a {red, blue} cat::2 hat::-0.5 --ar 16:9 --no text --repeat 2")`

The steps, in order: the whole text is checked against the length cap; `{a, b}` permutations expand
(also inside parameters; `\\,` is a literal comma, `\\{` a literal brace); in each variant a long
dash before a name means `--`; the text before the first `--name` is the prompt, the rest is
parameters; image links (http/https) at the start of the prompt become image prompts; `::` splits
the rest into weighted parts. `--repeat` copies a request. Model versions: `--v X` / `--version X`
picks the configured alias `X`; `--niji` alone picks the alias `niji` and `--niji X` the alias
`niji X`. `--zoom` belongs to Custom Zoom's box alone: `take_zoom` takes it out of that text before
the rest is parsed, and `parse` refuses it. Pure Python: no Discord here.

`str(request)` is canonical text that parses back to the same request. Parse it again without
the user's defaults: their effect is already written into it.
"""

from __future__ import annotations

from bot.prompt._lexer import PromptError
from bot.prompt._parameters import PromptLimits, normalise_defaults
from bot.prompt._parser import DEFAULT_LIMITS, MAX_IMAGE_PROMPTS, PromptPart, Request, parse
from bot.prompt._zoom import MAX_ZOOM, take_zoom

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_IMAGE_PROMPTS",
    "MAX_ZOOM",
    "PromptError",
    "PromptLimits",
    "PromptPart",
    "Request",
    "normalise_defaults",
    "parse",
    "take_zoom",
]
