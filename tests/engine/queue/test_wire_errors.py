"""Errors a remote worker reports reach the bot as the same kind, with what the owner is told."""

from __future__ import annotations

from engine.errors import GenerationError, ImageFlagged, PromptRefused
from engine.queue._wire import error_fields, read_error


def _through_redis(fields: dict[str, str]) -> dict[bytes, bytes]:
    return {key.encode(): value.encode() for key, value in fields.items()}


def test_a_refused_prompt_keeps_its_engine_and_reason() -> None:
    sent = PromptRefused("OpenAI gpt-image-1", "Your request was rejected by the safety system.")
    got = read_error(_through_redis(error_fields(sent)))
    assert isinstance(got, PromptRefused)
    assert (got.engine, got.reason, str(got)) == (sent.engine, sent.reason, str(sent))


def test_other_errors_keep_their_kind_and_message() -> None:
    flagged = read_error(_through_redis(error_fields(ImageFlagged())))
    assert isinstance(flagged, ImageFlagged)
    plain = read_error(_through_redis(error_fields(GenerationError("the API failed (500)"))))
    assert type(plain) is GenerationError
    assert str(plain) == "the API failed (500)"
