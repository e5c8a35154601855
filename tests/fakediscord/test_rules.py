"""Discord's message limits as the fake enforces them (pure functions, no server)."""

from __future__ import annotations

from typing import Any

from fakediscord.rules import check_message, check_modal, form_error


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
