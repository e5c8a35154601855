"""The names a report gives its rows' models: folders by as few last parts as tell them apart."""

from __future__ import annotations

from engine.evaluation._report import short_names


def test_folders_are_named_by_their_own_name_when_that_is_enough() -> None:
    assert short_names(["data", "/tmp/a/tiny-v1", "gan-tiny"]) == {
        "data": "data",
        "/tmp/a/tiny-v1": "tiny-v1",
        "gan-tiny": "gan-tiny",
    }


def test_two_folders_with_one_name_keep_the_parts_that_differ() -> None:
    names = short_names(["/tmp/v1/engine/model", "/tmp/v2/engine/model", "/tmp/v1/engine/model"])
    assert names == {"/tmp/v1/engine/model": "v1/engine/model", "/tmp/v2/engine/model": "v2/engine/model"}
