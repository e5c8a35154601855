"""Interaction callbacks and interaction webhooks (followups, `@original`), with Discord's rules:
acknowledge within the deadline, once; tokens expire; `@original` follows the response type.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from fakediscord.payloads import JSON
from fakediscord.rest import Body, HttpError, not_found
from fakediscord.rules import check_modal, error_body
from fakediscord.state import EPHEMERAL, LOADING, CallbackRecord, InteractionRecord, MessageRecord

if TYPE_CHECKING:
    from fakediscord.server import FakeDiscord

__all__ = ["InteractionRoutes"]

APPLICATION_COMMAND, COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
PONG, MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE, AUTOCOMPLETE_RESULT, MODAL = (
    1,
    4,
    5,
    6,
    7,
    8,
    9,
)


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in {"1", "true"}


class InteractionRoutes:
    """Handlers for `/interactions/...` and `/webhooks/{app}/{token}/...`."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    # --- lookups -------------------------------------------------------------------------------------

    def _expired(self, record: InteractionRecord) -> bool:
        age = time.monotonic() - record.dispatched_at
        return record.token_expired or age > self.fake.config.token_lifetime_s

    def _by_token(self, app: str, token: str) -> InteractionRecord:
        """The interaction behind a webhook token; 404 Unknown Webhook / 401 Invalid Webhook Token."""
        record = self.fake.tokens.get(token)
        if record is None or app != str(self.fake.world.application_id):
            raise not_found(10015, "Webhook", "unknown_webhook")
        if self._expired(record):
            raise HttpError(401, error_body(50027, "Invalid Webhook Token"), "expired_token")
        if not record.acknowledged:
            raise not_found(10015, "Webhook", f"webhook_before_ack: {record} was never acknowledged")
        return record

    def _webhook_message(self, record: InteractionRecord, mid: str) -> MessageRecord:
        message_id = record.original_message_id if mid == "@original" else int(mid) if mid.isdigit() else None
        allowed = {record.original_message_id, *record.followup_ids}
        message = self.fake.state.messages.get(message_id) if message_id is not None else None
        if message is None or message.deleted or message.id not in allowed:
            raise not_found(10008, "Message")
        return message

    def _payload(self, message: MessageRecord) -> JSON:
        return message.to_payload(self.fake.url)

    # --- POST /interactions/{id}/{token}/callback ----------------------------------------------------

    async def callback(self, iid: str, token: str, body: Body, query: Any, **_: Any) -> Any:
        record = self.fake.state.interactions.get(int(iid)) if iid.isdigit() else None
        if record is None or record.token != token:
            raise not_found(10062, "interaction", "unknown_interaction")
        now = time.monotonic()
        if record.acknowledged:
            raise HttpError(
                400,
                error_body(40060, "Interaction has already been acknowledged."),
                f"double_ack: {record} answered twice",
            )
        late = now - record.dispatched_at
        if late > self.fake.config.ack_deadline_s or self._expired(record):
            raise not_found(10062, "interaction", f"late_ack: {record} acknowledged after {late:.2f}s")

        payload = body.json or {}
        kind = int(payload.get("type", 0))
        data = dict(payload.get("data") or {})
        message = self._respond(record, kind, data, body)
        record.callbacks.append(
            CallbackRecord(kind, data, now, tuple(body.files[i] for i in sorted(body.files)))
        )
        if not _truthy(query.get("with_response")):
            return web.Response(status=204)
        return self._callback_response(record, kind, message)

    def _respond(self, record: InteractionRecord, kind: int, data: JSON, body: Body) -> MessageRecord | None:
        rest = self.fake.rest
        channel = self.fake.find_channel(record.channel_id)
        assert channel is not None, "interaction channel vanished"
        from_message = record.type in (COMPONENT, MODAL_SUBMIT) and record.message_id is not None
        if kind == MESSAGE:
            message = rest.create_message(channel, data, body.files, interaction=record, prefix="data.")
            record.original_message_id = message.id
            return message
        if kind == DEFERRED_MESSAGE:
            flags = (int(data.get("flags") or 0) & EPHEMERAL) | LOADING
            message = rest.record_message(channel, record, flags)
            message.snapshot()
            self.fake.message_event("MESSAGE_CREATE", message)
            record.original_message_id = message.id
            return message
        if kind in (DEFERRED_UPDATE, UPDATE_MESSAGE):
            if not from_message:
                raise HttpError(
                    400,
                    error_body(40043, "This interaction response type is only valid for message components"),
                    f"bad_response_type: type {kind} answered {record}",
                )
            assert record.message_id is not None
            message = self.fake.state.messages[record.message_id]
            record.original_message_id = message.id
            if kind == UPDATE_MESSAGE:
                rest.apply_edit(message, data, body.files, prefix="data.")
            return message
        if kind == AUTOCOMPLETE_RESULT and record.type == AUTOCOMPLETE:
            return None
        if kind == MODAL and record.type in (APPLICATION_COMMAND, COMPONENT):
            rest.check(check_modal(data))
            return None
        if kind == PONG:
            return None
        raise HttpError(
            400, error_body(50035, "Invalid Form Body"), f"bad_response_type: type {kind} answered {record}"
        )

    def _callback_response(self, record: InteractionRecord, kind: int, message: MessageRecord | None) -> JSON:
        info: JSON = {
            "id": str(record.id),
            "type": record.type,
            "response_message_loading": kind == DEFERRED_MESSAGE,
            "response_message_ephemeral": bool(message and message.ephemeral),
        }
        if message is not None:
            info["response_message_id"] = str(message.id)
        response: JSON = {"interaction": info}
        if message is not None and kind in (MESSAGE, DEFERRED_MESSAGE, UPDATE_MESSAGE):
            response["resource"] = {"type": kind, "message": self._payload(message)}
        return response

    # --- /webhooks/{app}/{token}... ------------------------------------------------------------------

    async def followup(self, app: str, token: str, body: Body, query: Any, **_: Any) -> Any:
        record = self._by_token(app, token)
        data = dict(body.json or {})
        original = record.original()
        if original is not None and original.loading and record.response_type == DEFERRED_MESSAGE:
            # The first followup after a "thinking" defer fills the placeholder; it keeps the defer's
            # ephemeral choice, as on Discord.
            data.pop("flags", None)
            self.fake.rest.apply_edit(original, data, body.files)
            message = original
        else:
            channel = self.fake.find_channel(record.channel_id)
            assert channel is not None
            message = self.fake.rest.create_message(channel, data, body.files, interaction=record)
            record.followup_ids.append(message.id)
        if not _truthy(query.get("wait")):
            return web.Response(status=204)
        return self._payload(message)

    async def get_webhook_message(self, app: str, token: str, mid: str, **_: Any) -> JSON:
        record = self._by_token(app, token)
        return self._payload(self._webhook_message(record, mid))

    async def edit_webhook_message(self, app: str, token: str, mid: str, body: Body, **_: Any) -> JSON:
        record = self._by_token(app, token)
        message = self._webhook_message(record, mid)
        self.fake.rest.apply_edit(message, dict(body.json or {}), body.files)
        return self._payload(message)

    async def delete_webhook_message(self, app: str, token: str, mid: str, **_: Any) -> web.Response:
        record = self._by_token(app, token)
        self.fake.delete_message(self._webhook_message(record, mid))
        return web.Response(status=204)
