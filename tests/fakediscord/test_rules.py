"""Discord's message limits as the fake enforces them (pure functions, no server)."""

from __future__ import annotations

from typing import Any

from fakediscord.rules import check_command, check_commands, check_message, check_modal, form_error


def button(custom_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": 2, "style": 1, "label": custom_id[:10], "custom_id": custom_id, **extra}


def rows(*counts: int) -> list[dict[str, Any]]:
    return [{"type": 1, "components": [button(f"b{r}-{i}") for i in range(n)]} for r, n in enumerate(counts)]


def paths(body: dict[str, Any], *, creating: bool = True) -> list[str]:
    return [p.path for p in check_message(body, creating=creating, max_content=2000)]


def test_a_full_grid_of_buttons_is_allowed() -> None:
    assert paths({"content": "x", "components": rows(5, 5, 5, 5, 5)}) == []


def test_rows_and_buttons_per_row_are_limited() -> None:
    assert paths({"components": rows(1, 1, 1, 1, 1, 1)}) == ["components"]
    assert paths({"components": rows(5, 6)}) == ["components.1.components"]


def test_custom_ids_are_short_and_unique() -> None:
    long_id = {"type": 1, "components": [button("x" * 100), button("y" * 101)]}
    assert paths({"components": [long_id]}) == ["components.0.components.1.custom_id"]
    twice = {"type": 1, "components": [button("same"), button("same")]}
    assert paths({"components": [twice]}) == ["components.0.components.1.custom_id"]


def test_link_buttons_take_no_custom_id_and_others_need_one() -> None:
    link = {"type": 2, "style": 5, "label": "docs", "url": "https://example.org", "custom_id": "no"}
    plain = {"type": 2, "style": 1, "label": "go"}
    assert paths({"components": [{"type": 1, "components": [link, plain]}]}) == [
        "components.0.components.0.custom_id",
        "components.0.components.1.custom_id",
    ]


def test_content_length_and_empty_messages() -> None:
    assert paths({"content": "x" * 2000}) == []
    assert paths({"content": "x" * 2001}) == ["content"]
    assert paths({"content": ""}) == ["content"]
    assert paths({"content": ""}, creating=False) == []
    assert [p.path for p in check_message({}, creating=True, max_content=2000, files=1)] == []


def test_errors_nest_like_discords() -> None:
    problems = check_message({"components": rows(5, 6)}, prefix="data.", creating=False, max_content=2000)
    body = form_error(problems)
    assert body["code"] == 50035
    assert (
        body["errors"]["data"]["components"]["1"]["components"]["_errors"][0]["code"]
        == "BASE_TYPE_MAX_LENGTH"
    )


def test_modal_shape() -> None:
    field = {"type": 1, "components": [{"type": 4, "custom_id": "f", "label": "F", "style": 1}]}
    assert check_modal({"custom_id": "m", "title": "Title", "components": [field]}) == []
    bad = check_modal({"custom_id": "m" * 101, "title": "T" * 46, "components": [field] * 6})
    assert [p.path for p in bad][:3] == ["data.custom_id", "data.title", "data.components"]


def option(name: str, kind: int = 3, *, required: bool = False, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "name": name, "description": name, "required": required, **extra}


def command(*options: dict[str, Any], name: str = "imagine") -> dict[str, Any]:
    return {"type": 1, "name": name, "description": "Create images", "options": list(options)}


def test_attachment_options_sync() -> None:
    blend = command(
        option("image1", 11, required=True),
        option("image2", 11, required=True),
        *(option(f"image{i}", 11) for i in (3, 4, 5)),
        option("dimensions", choices=[{"name": "square", "value": "1:1"}]),
        name="blend",
    )
    assert check_commands([blend, command(option("prompt", required=True), option("image", 11))]) == []


def test_command_schema_rules() -> None:
    order = command(option("image", 11), option("prompt", required=True))
    assert [(p.path, p.code) for p in check_commands([order])] == [
        ("0.options.1", "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID")
    ]
    assert [p.path for p in check_command(command(*(option(f"o{i}") for i in range(26))))] == ["options"]
    loud = command(option("Prompt", description="x" * 101), name="Imagine")
    assert [p.path for p in check_command(loud)] == ["name", "options.0.name", "options.0.description"]
    choices = command(option("image", 11, choices=[{"name": "a", "value": "a"}]))
    assert [p.code for p in check_command(choices)] == ["APPLICATION_COMMAND_OPTION_CHOICES_INVALID"]
    twice = check_commands([command(), command()])
    assert [(p.path, p.code) for p in twice] == [("1.name", "APPLICATION_COMMANDS_DUPLICATE_NAME")]
    mixed = command(option("sub", 1), option("prompt"))
    assert [p.path for p in check_command(mixed)] == ["options.0.type"]
    grouped = command(option("group", 2, options=[option("sub", 1, options=[option("image", 11)])]))
    assert check_command(grouped) == []
    assert check_command({"type": 3, "name": "Upscale this", "description": ""}) == []
