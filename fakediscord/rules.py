"""The limits production Discord enforces on what a bot sends, answered with Discord's own error JSON.

Only rules a bot can plausibly break are here: content length, action rows and buttons, custom ids,
empty messages, attachment size, modal shape, and the command schema it syncs (names, descriptions,
option count and order, choices). Each check returns problems as (field path, code, message) so the
server can build the nested `errors` object Discord uses for code 50035.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fakediscord.payloads import JSON

__all__ = [
    "Problem",
    "check_command",
    "check_commands",
    "check_message",
    "check_modal",
    "error_body",
    "form_error",
]

COMPONENTS_V2 = 1 << 15
MAX_CUSTOM_ID = 100
MAX_ROWS = 5
MAX_PER_ROW = 5
MAX_LABEL = 80
MAX_MODAL_TITLE = 45
CHAT_INPUT = 1
SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
OPTION_TYPES = range(1, 12)  # subcommand … attachment (11)
CHOICE_TYPES = {3, 4, 10}  # string, integer, number
MAX_OPTIONS = MAX_CHOICES = 25
MAX_DESCRIPTION = MAX_CHOICE = 100
MAX_COMMAND_SIZE = 4000
MAX_CHAT_INPUT_COMMANDS = 100
# Discord's pattern is ^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$; \w is close enough for bots' names.
_NAME = re.compile(r"[-_'\w]{1,32}")


@dataclass(frozen=True)
class Problem:
    """One invalid field: its dotted path in the body, Discord's error code and message."""

    path: str
    code: str
    message: str


def error_body(code: int, message: str, errors: JSON | None = None) -> JSON:
    """Discord's error JSON: `{"code": ..., "message": ..., "errors": {...}}`."""
    body: JSON = {"code": code, "message": message}
    if errors:
        body["errors"] = errors
    return body


def form_error(problems: Iterable[Problem]) -> JSON:
    """Code 50035 "Invalid Form Body" with the nested per-field errors Discord sends."""
    errors: dict[str, Any] = {}
    for problem in problems:
        node = errors
        for key in problem.path.split(".") if problem.path else []:  # "" is the body itself
            node = node.setdefault(key, {})
        node.setdefault("_errors", []).append({"code": problem.code, "message": problem.message})
    return error_body(50035, "Invalid Form Body", errors)


def _too_long(path: str, limit: int) -> Problem:
    return Problem(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def _check_custom_id(path: str, component: JSON, seen: set[str]) -> list[Problem]:
    custom_id = component.get("custom_id")
    if custom_id is None:
        return []
    if len(str(custom_id)) > MAX_CUSTOM_ID:
        return [_too_long(f"{path}.custom_id", MAX_CUSTOM_ID)]
    if custom_id in seen:
        return [
            Problem(
                f"{path}.custom_id",
                "COMPONENT_CUSTOM_ID_DUPLICATED",
                "Component custom id cannot be duplicated",
            )
        ]
    seen.add(str(custom_id))
    return []


def _check_button(path: str, button: JSON, seen: set[str]) -> list[Problem]:
    problems = _check_custom_id(path, button, seen)
    if len(str(button.get("label") or "")) > MAX_LABEL:
        problems.append(_too_long(f"{path}.label", MAX_LABEL))
    link = button.get("style") == 5
    if link and "custom_id" in button:
        problems.append(
            Problem(
                f"{path}.custom_id",
                "BUTTON_COMPONENT_CUSTOM_ID_DISALLOWED",
                "A link button cannot have a custom id",
            )
        )
    if not link and "custom_id" not in button and button.get("style") != 6:
        problems.append(
            Problem(f"{path}.custom_id", "BUTTON_COMPONENT_CUSTOM_ID_REQUIRED", "A custom id is required")
        )
    return problems


def _check_components(prefix: str, components: list[JSON], flags: int) -> list[Problem]:
    seen: set[str] = set()
    problems: list[Problem] = []
    if flags & COMPONENTS_V2:
        # Layout components nest freely; still every custom id must be short and unique.
        stack = [(f"{prefix}components.{i}", c) for i, c in enumerate(components)]
        while stack:
            path, component = stack.pop()
            problems += _check_custom_id(path, component, seen)
            stack += [(f"{path}.components.{i}", c) for i, c in enumerate(component.get("components", []))]
        return problems
    if len(components) > MAX_ROWS:
        problems.append(_too_long(f"{prefix}components", MAX_ROWS))
    for r, row in enumerate(components):
        row_path = f"{prefix}components.{r}"
        if row.get("type") != 1:
            problems.append(
                Problem(f"{row_path}.type", "UNION_TYPE_CHOICES", "Top-level components must be action rows")
            )
            continue
        children = row.get("components", [])
        if len(children) > MAX_PER_ROW:
            problems.append(_too_long(f"{row_path}.components", MAX_PER_ROW))
        for c, child in enumerate(children):
            path = f"{row_path}.components.{c}"
            if child.get("type") == 2:
                problems += _check_button(path, child, seen)
            else:
                problems += _check_custom_id(path, child, seen)
    return problems


def check_message(
    body: JSON, *, prefix: str = "", creating: bool, max_content: int, files: int = 0
) -> list[Problem]:
    """Problems with a message create/edit body (`prefix` is "data." inside an interaction callback)."""
    problems: list[Problem] = []
    content = body.get("content")
    if content is not None and len(str(content)) > max_content:
        problems.append(_too_long(f"{prefix}content", max_content))
    components = body.get("components")
    if components:
        problems += _check_components(prefix, list(components), int(body.get("flags") or 0))
    if len(body.get("embeds") or []) > 10:
        problems.append(_too_long(f"{prefix}embeds", 10))
    if creating and not (content or body.get("embeds") or components or files or body.get("poll")):
        problems.append(Problem(f"{prefix}content", "BASE_TYPE_REQUIRED", "Cannot send an empty message"))
    return problems


def check_modal(data: JSON) -> list[Problem]:
    """Problems with the `data` of a type-9 (modal) callback."""
    problems: list[Problem] = []
    if len(str(data.get("custom_id", ""))) > MAX_CUSTOM_ID:
        problems.append(_too_long("data.custom_id", MAX_CUSTOM_ID))
    if not data.get("title") or len(str(data["title"])) > MAX_MODAL_TITLE:
        problems.append(_too_long("data.title", MAX_MODAL_TITLE))
    components = list(data.get("components") or [])
    if not 1 <= len(components) <= MAX_ROWS:
        problems.append(
            Problem("data.components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
        )
    seen: set[str] = set()
    stack = [(f"data.components.{i}", c) for i, c in enumerate(components)]
    while stack:
        path, component = stack.pop()
        problems += _check_custom_id(path, component, seen)
        children = component.get("components") or (
            [component["component"]] if "component" in component else []
        )
        stack += [(f"{path}.components.{i}", c) for i, c in enumerate(children)]
    return problems


def check_commands(commands: list[JSON]) -> list[Problem]:
    """Problems with a bulk overwrite (`PUT .../commands`): each command, and names unique per type."""
    problems: list[Problem] = []
    seen: set[tuple[int, str]] = set()
    for i, command in enumerate(commands):
        problems += check_command(command, prefix=f"{i}.")
        key = (int(command.get("type") or CHAT_INPUT), str(command.get("name")))
        if key in seen:
            message = "Application command names must be unique"
            problems.append(Problem(f"{i}.name", "APPLICATION_COMMANDS_DUPLICATE_NAME", message))
        seen.add(key)
    chat_input = sum(1 for c in commands if int(c.get("type") or CHAT_INPUT) == CHAT_INPUT)
    if chat_input > MAX_CHAT_INPUT_COMMANDS:
        problems.append(_too_long("", MAX_CHAT_INPUT_COMMANDS))
    return problems


def check_command(command: JSON, *, prefix: str = "") -> list[Problem]:
    """Problems with one command as Discord validates it on create or overwrite."""
    if int(command.get("type") or CHAT_INPUT) != CHAT_INPUT:
        name = str(command.get("name") or "")
        return [] if 1 <= len(name) <= 32 else [_bad_length(f"{prefix}name", 1, 32)]
    problems = _check_named(prefix, command, "Command name is invalid")
    problems += _check_options(prefix, list(command.get("options") or []), depth=0)
    if _size(command) > MAX_COMMAND_SIZE:
        message = f"Command exceeds maximum size ({MAX_COMMAND_SIZE})"
        problems.append(Problem(prefix.rstrip("."), "APPLICATION_COMMAND_TOO_LARGE", message))
    return problems


def _bad_length(path: str, low: int, high: int) -> Problem:
    return Problem(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")


def _check_named(prefix: str, item: JSON, invalid_name: str) -> list[Problem]:
    """Name (lower-case where a letter has a lower case) and description (1-100) of a command or option."""
    problems: list[Problem] = []
    name = str(item.get("name") or "")
    if not _NAME.fullmatch(name) or name != name.lower():
        problems.append(Problem(f"{prefix}name", "APPLICATION_COMMAND_INVALID_NAME", invalid_name))
    if not 1 <= len(str(item.get("description") or "")) <= MAX_DESCRIPTION:
        problems.append(_bad_length(f"{prefix}description", 1, MAX_DESCRIPTION))
    return problems


def _check_options(prefix: str, options: list[JSON], *, depth: int) -> list[Problem]:
    problems: list[Problem] = []
    if len(options) > MAX_OPTIONS:
        problems.append(_too_long(f"{prefix}options", MAX_OPTIONS))
    names: set[str] = set()
    optional_seen = False
    nested = sum(1 for o in options if o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP))
    for i, option in enumerate(options):
        path = f"{prefix}options.{i}."
        kind = option.get("type")
        problems += _check_named(path, option, "Option name is invalid")
        if kind not in OPTION_TYPES:
            message = f"Value must be one of {sorted(OPTION_TYPES)}."
            problems.append(Problem(f"{path}type", "BASE_TYPE_CHOICES", message))
            continue
        if option.get("name") in names:
            message = "Option names must be unique"
            problems.append(Problem(f"{path}name", "APPLICATION_COMMAND_OPTIONS_DUPLICATE_NAME", message))
        names.add(str(option.get("name")))
        if kind in (SUB_COMMAND, SUB_COMMAND_GROUP):
            problems += _check_subcommand(path, option, depth=depth, mixed=nested != len(options))
            continue
        if not option.get("required"):
            optional_seen = True
        elif optional_seen:
            message = "Required options must be placed before non-required options"
            problems.append(
                Problem(path.rstrip("."), "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID", message)
            )
        problems += _check_choices(path, option)
    return problems


def _check_subcommand(path: str, option: JSON, *, depth: int, mixed: bool) -> list[Problem]:
    """Groups hold subcommands, subcommands hold plain options; neither sits beside plain options."""
    kind = option["type"]
    allowed = depth == 0 or (depth == 1 and kind == SUB_COMMAND)
    if mixed or not allowed:
        message = "Subcommands nest at most as group > subcommand, and never beside plain options"
        return [Problem(f"{path}type", "APPLICATION_COMMAND_OPTION_TYPE_INVALID", message)]
    children = list(option.get("options") or [])
    if kind == SUB_COMMAND_GROUP and any(c.get("type") != SUB_COMMAND for c in children):
        message = "A subcommand group may only contain subcommands"
        return [Problem(f"{path}options", "APPLICATION_COMMAND_OPTION_TYPE_INVALID", message)]
    return _check_options(path, children, depth=depth + 1)


def _check_choices(path: str, option: JSON) -> list[Problem]:
    choices = list(option.get("choices") or [])
    if not choices:
        return []
    problems: list[Problem] = []
    if option["type"] not in CHOICE_TYPES:
        message = "Only string, integer and number options can have choices"
        problems.append(Problem(f"{path}choices", "APPLICATION_COMMAND_OPTION_CHOICES_INVALID", message))
    if option.get("autocomplete"):
        message = "Autocomplete cannot be enabled on an option with choices"
        problems.append(Problem(f"{path}autocomplete", "APPLICATION_COMMAND_AUTOCOMPLETE_INVALID", message))
    if len(choices) > MAX_CHOICES:
        problems.append(_too_long(f"{path}choices", MAX_CHOICES))
    for c, choice in enumerate(choices):
        if not 1 <= len(str(choice.get("name") or "")) <= MAX_CHOICE:
            problems.append(_bad_length(f"{path}choices.{c}.name", 1, MAX_CHOICE))
        value = choice.get("value")
        if isinstance(value, str) and len(value) > MAX_CHOICE:
            problems.append(_too_long(f"{path}choices.{c}.value", MAX_CHOICE))
    return problems


def _size(command: JSON) -> int:
    """Characters Discord counts against the 4000 limit: names, descriptions, choice names and values."""
    total = len(str(command.get("name") or "")) + len(str(command.get("description") or ""))
    for option in command.get("options") or []:
        total += _size(option)
        for choice in option.get("choices") or []:
            total += len(str(choice.get("name") or "")) + len(str(choice.get("value") or ""))
    return total
