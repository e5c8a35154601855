"""The limits production Discord enforces on what a bot sends, answered with Discord's own error JSON.

Only rules a bot can plausibly break are here: content length, action rows and buttons, custom ids,
empty messages, attachment size, modal shape. Each check returns problems as (field path, code,
message) so the server can build the nested `errors` object Discord uses for code 50035.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fakediscord.payloads import JSON

__all__ = ["Problem", "check_message", "check_modal", "error_body", "form_error"]

COMPONENTS_V2 = 1 << 15
MAX_CUSTOM_ID = 100
MAX_ROWS = 5
MAX_PER_ROW = 5
MAX_LABEL = 80
MAX_MODAL_TITLE = 45


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
        for key in problem.path.split("."):
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
