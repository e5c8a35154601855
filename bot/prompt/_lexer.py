"""Lexing for the prompt language: dashes, `{a, b}` permutations, parameters, image URLs, `::` weights.

Private to `bot.prompt`; every function here raises only `PromptError` on bad input.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlsplit

__all__ = [
    "ESCAPABLE",
    "MAX_NESTING",
    "PromptError",
    "RawParameter",
    "escape",
    "expand_permutations",
    "format_number",
    "normalise_dashes",
    "normalise_space",
    "quote",
    "split_image_prompts",
    "split_multiprompt",
    "split_parameters",
]

ESCAPABLE = ",{}\\"
"""Characters a backslash escapes: `\\,` is a literal comma inside `{...}`, `\\{` a literal brace."""

MAX_NESTING = 8
"""Deepest `{...}` nesting accepted; deeper is surely a mistake and would only waste time."""

# Phones turn a typed `--` into a long dash; at the start of a word before a letter it means `--`.
_LONG_DASH = re.compile(r"(?<!\S)[\u2014\u2013](?=[A-Za-z])")
_MARKER = re.compile(r"(?<!\S)--")
_NAME = re.compile(r"\S*")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_WEIGHT = re.compile(r"-?(?:\d{1,10}(?:\.\d{1,10})?|\.\d{1,10})")
_PARAMETER_LIKE = re.compile(r"--|[\u2014\u2013][A-Za-z]")


class PromptError(ValueError):
    """The prompt cannot be used as written; the message says what to change."""

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter
        """The parameter at fault as typed (`--ar`), or None when the prompt text itself is."""


def quote(value: str, limit: int = 60) -> str:
    """`value` in backticks for an error message, shortened so the message stays readable."""
    value = value.replace("`", "'")
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return f"`{value}`"


def normalise_space(text: str) -> str:
    """Collapse every run of whitespace to one space and trim the ends."""
    return " ".join(text.split())


def normalise_dashes(text: str) -> str:
    """Turn the long dash a phone substitutes for `--` (`—ar 16:9`) back into `--`."""
    return _LONG_DASH.sub("--", text)


def format_number(value: float) -> str:
    """Shortest plain decimal that reads back as the same float: 2.0 -> `2`, 1e-05 -> `0.00001`."""
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def escape(text: str) -> str:
    """Escape braces and meaningful backslashes so `expand_permutations` gives `text` back unchanged."""
    out: list[str] = []
    for i, char in enumerate(text):
        if char in "{}":
            out.append("\\" + char)
        elif char == "\\" and i + 1 < len(text) and text[i + 1] in ESCAPABLE:
            out.append("\\\\")
        else:
            out.append(char)
    return "".join(out)


# --- permutations -------------------------------------------------------------------------------


class _Group:
    """One `{a, b}`: a list of alternatives, each a sequence of literal text and nested groups."""

    __slots__ = ("options",)

    def __init__(self) -> None:
        self.options: list[_Seq] = [[]]


_Seq = list[str | _Group]


def _parse_braces(text: str) -> _Seq:
    root: _Seq = []
    stack: list[tuple[_Seq, _Group]] = []
    current = root
    buffer: list[str] = []

    def flush() -> None:
        if buffer:
            current.append("".join(buffer))
            buffer.clear()

    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in ESCAPABLE:
            buffer.append(text[i + 1])
            i += 2
            continue
        if char == "{":
            if len(stack) == MAX_NESTING:
                raise PromptError(
                    f"Permutations `{{...}}` can nest at most {MAX_NESTING} deep; simplify the braces."
                )
            flush()
            group = _Group()
            current.append(group)
            stack.append((current, group))
            current = group.options[-1]
        elif char == "," and stack:
            flush()
            stack[-1][1].options.append([])
            current = stack[-1][1].options[-1]
        elif char == "}":
            if not stack:
                raise PromptError(
                    f"There is a `}}` with no `{{` before it (at {quote(text[max(0, i - 20) : i + 1])}); "
                    "remove it, or write `\\}` for a literal brace."
                )
            flush()
            current = stack.pop()[0]
        else:
            buffer.append(char)
        i += 1
    if stack:
        raise PromptError(
            "A `{` is never closed; permutations look like `a {red, blue} bird` "
            "(write `\\{` for a literal brace)."
        )
    flush()
    return root


def _count(seq: _Seq) -> int:
    total = 1
    for item in seq:
        if not isinstance(item, str):
            total *= sum(_count(option) for option in item.options)
    return total


def _expand(seq: _Seq) -> list[str]:
    results = [""]
    for item in seq:
        if isinstance(item, str):
            results = [prefix + item for prefix in results]
        else:
            # Options are trimmed so `{a, b}` gives `b`, not ` b` (this matters inside parameters).
            options = [text.strip() for option in item.options for text in _expand(option)]
            results = [prefix + option for prefix in results for option in options]
    return results


def expand_permutations(text: str, cap: int) -> list[str]:
    """Expand `{a, b}` groups (nested, with `\\,` escapes) into every variant, in order; at most `cap`."""
    tree = _parse_braces(text)
    count = _count(tree)
    if count > cap:
        raise PromptError(
            f"This prompt's `{{...}}` permutations make {count} prompts; the limit is {cap}. "
            "Use fewer options."
        )
    return _expand(tree)


# --- parameters ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RawParameter:
    """One `--name value` as typed; `value` has its whitespace normalised."""

    flag: str
    """`--` and the name as typed, for messages: `--AR`."""
    name: str
    """Lower-cased name without dashes: `ar`."""
    value: str


def split_parameters(text: str) -> tuple[str, list[RawParameter]]:
    """Split `text --a 1 --b 2` into the prompt text and its parameters, in order."""
    markers = [m.start() for m in _MARKER.finditer(text)]
    if not markers:
        return text, []
    parameters: list[RawParameter] = []
    for start, end in zip(markers, [*markers[1:], len(text)], strict=True):
        name_match = _NAME.match(text, start + 2)
        assert name_match is not None  # \S* always matches
        name = name_match.group()
        if not name:
            raise PromptError(
                "There is a lone `--`; parameters look like `--ar 16:9`. "
                "Remove the `--` or write the parameter name right after it."
            )
        value = normalise_space(text[name_match.end() : end])
        parameters.append(RawParameter(flag="--" + name, name=name.lower(), value=value))
    return text[: markers[0]], parameters


# --- the prompt text ----------------------------------------------------------------------------


def _image_url(token: str) -> str | None:
    """The URL in `token` if it is one (`<...>` as Discord users write to hide embeds), else None."""
    url = token[1:-1] if token.startswith("<") and token.endswith(">") and len(token) > 2 else token
    if not _SCHEME.match(url):
        return None
    try:
        parts = urlsplit(url)
        scheme, netloc = parts.scheme, parts.netloc
    except ValueError:
        scheme, netloc = "", ""
    if scheme not in ("http", "https"):
        raise PromptError(
            f"Image prompts must be http or https links; got {quote(url)}. "
            "Upload the image to Discord and paste its link."
        )
    if not netloc:
        raise PromptError(f"The image link {quote(url)} has no host name; paste the whole link.")
    return url


def split_image_prompts(text: str) -> tuple[tuple[str, ...], str]:
    """Take the image URLs at the start of `text`; return them and the rest (whitespace normalised)."""
    tokens = text.split()
    urls: list[str] = []
    for token in tokens:
        url = _image_url(token)
        if url is None:
            break
        urls.append(url)
    return tuple(urls), " ".join(tokens[len(urls) :])


def _check_part_text(text: str) -> None:
    if _PARAMETER_LIKE.match(text):
        raise PromptError(
            f"{quote(text)} comes right after `::`; parameters go at the end of the prompt with a space "
            "before each, like `cat::2 dog --ar 16:9`."
        )


def split_multiprompt(text: str) -> list[tuple[str, float]] | None:
    """Split `hot dog::1.5 food::-0.5` into (text, weight) parts; None when there is no `::`."""
    if "::" not in text:
        return None
    parts: list[tuple[str, float]] = []
    position = 0
    while (separator := text.find("::", position)) >= 0:
        if text[separator + 2 : separator + 3] == ":" and text[separator + 3 : separator + 4] != ":":
            separator += 1  # `a:::2` is `a:` weighted 2, not `a` and `:2`
        part = normalise_space(text[position:separator])
        position = separator + 2
        weight = 1.0
        match = _WEIGHT.match(text, position)
        if match:
            if match.end() < len(text) and not text[match.end()].isspace():
                raise PromptError(
                    f"{quote(text[separator : separator + 20].split()[0])}: a weight after `::` is a number "
                    "followed by a space, like `dog::2 cat`. To start the next part with a number, "
                    "put a space after `::`."
                )
            weight = float(match.group())
            position = match.end()
        if not part:
            raise PromptError(
                "A multi-prompt part is empty; write text before each `::`, like `hot dog::1.5 food::-0.5`."
            )
        _check_part_text(part)
        parts.append((part, weight))
    tail = normalise_space(text[position:])
    if tail:
        _check_part_text(tail)
        parts.append((tail, 1.0))
    total = math.fsum(weight for _, weight in parts)
    if total <= 0:
        raise PromptError(
            f"The `::` weights add up to {format_number(total)}; the total must be positive. "
            "Raise a positive weight or shrink a negative one."
        )
    return parts
