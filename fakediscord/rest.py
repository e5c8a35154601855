"""The fake REST API: one catch-all aiohttp handler, a small route table, and the message logic.

Replies carry `Content-Type: application/json` exactly, because discord.py only decodes JSON when
the header is that string (aiohttp's `json_response` appends `; charset=utf-8`). Unknown routes get
a 404 JSON answer and are recorded in `state.unknown_routes` so a test can assert none were hit.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from aiohttp import web

from fakediscord.cdn import guess_content_type
from fakediscord.payloads import JSON, FakeChannel, FakeGuild, iso_now, new_snowflake
from fakediscord.rules import Problem, check_command, check_commands, check_message, error_body, form_error
from fakediscord.state import (
    EPHEMERAL,
    LOADING,
    Attachment,
    InteractionRecord,
    MessageRecord,
    RequestRecord,
    Violation,
)

if TYPE_CHECKING:
    from fakediscord.server import FakeDiscord

__all__ = ["Body", "Failure", "RestApi"]

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
# Flags a bot may set on a message it sends: ephemeral (interaction replies only), suppress embeds,
# suppress notifications, components v2.
SENDABLE_FLAGS = EPHEMERAL | (1 << 2) | (1 << 12) | (1 << 15)


class HttpError(Exception):
    """Answer the current request with this status and Discord error body."""

    def __init__(self, status: int, body: JSON, violation: str | None = None) -> None:
        super().__init__(body.get("message"))
        self.status = status
        self.body = body
        self.violation = violation


def not_found(code: int, what: str, violation: str | None = None) -> HttpError:
    return HttpError(404, error_body(code, f"Unknown {what}"), violation)


@dataclass
class Body:
    """A parsed request body: JSON (or multipart `payload_json`) plus uploaded files by index."""

    json: Any = None
    files: dict[int, Attachment] = field(default_factory=dict)
    size: int = 0
    """Bytes on the wire (the request's Content-Length, else what its parts held)."""


@dataclass
class Failure:
    """An injected failure (`FakeDiscord.fail_next`) for requests matching `pattern`."""

    pattern: str
    status: int
    remaining: int
    body: JSON

    def matches(self, method: str, path: str) -> bool:
        target = f"{method} {path}" if " " in self.pattern else path
        return fnmatch.fnmatchcase(target, self.pattern)


Handler = Callable[..., Awaitable[Any]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON reply whose Content-Type is exactly `application/json`."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


class RestApi:
    """Routes Discord REST calls to handlers that read and write the fake's state."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.failures: list[Failure] = []
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        r = self._route
        r("GET", "/gateway", self.get_gateway)
        r("GET", "/gateway/bot", self.get_bot_gateway)
        r("GET", "/users/@me", self.get_me)
        r("GET", "/users/{uid}", self.get_user)
        r("POST", "/users/@me/channels", self.create_dm)
        r("GET", "/oauth2/applications/@me", self.get_application)
        r("GET", "/applications/@me", self.get_application)
        r("GET", "/applications/{app}/commands", self.get_commands)
        r("PUT", "/applications/{app}/commands", self.put_commands)
        r("POST", "/applications/{app}/commands", self.post_command)
        r("GET", "/applications/{app}/guilds/{gid}/commands", self.get_commands)
        r("PUT", "/applications/{app}/guilds/{gid}/commands", self.put_commands)
        r("POST", "/applications/{app}/guilds/{gid}/commands", self.post_command)
        r("POST", "/interactions/{iid}/{token}/callback", self.fake.interactions.callback)
        r("POST", "/webhooks/{app}/{token}", self.fake.interactions.followup)
        r("GET", "/webhooks/{app}/{token}/messages/{mid}", self.fake.interactions.get_webhook_message)
        r("PATCH", "/webhooks/{app}/{token}/messages/{mid}", self.fake.interactions.edit_webhook_message)
        r("DELETE", "/webhooks/{app}/{token}/messages/{mid}", self.fake.interactions.delete_webhook_message)
        r("GET", "/channels/{cid}", self.get_channel)
        r("POST", "/channels/{cid}/messages", self.post_message)
        r("GET", "/channels/{cid}/messages", self.list_messages)
        r("GET", "/channels/{cid}/messages/{mid}", self.get_message)
        r("PATCH", "/channels/{cid}/messages/{mid}", self.edit_message)
        r("DELETE", "/channels/{cid}/messages/{mid}", self.delete_message)
        r("POST", "/channels/{cid}/typing", self.no_content)
        r("PUT", "/channels/{cid}/messages/{mid}/reactions/{emoji}/@me", self.no_content)
        r("DELETE", "/channels/{cid}/messages/{mid}/reactions/{emoji}/@me", self.no_content)
        r("GET", "/guilds/{gid}", self.get_guild)
        r("GET", "/guilds/{gid}/channels", self.get_guild_channels)
        r("GET", "/guilds/{gid}/roles", self.get_guild_roles)
        r("GET", "/guilds/{gid}/members", self.list_members)
        r("GET", "/guilds/{gid}/members/{uid}", self.get_member)

    def _route(self, method: str, template: str, handler: Handler) -> None:
        # Ids are snowflakes (a message id may also be `@original`); tokens and emoji are free text.
        def group(match: re.Match[str]) -> str:
            name = match[1]
            shape = {"token": "[^/]+", "emoji": "[^/]+", "mid": r"\d+|@original"}.get(name, r"\d+")
            return f"(?P<{name}>{shape})"

        pattern = re.sub(r"\\\{(\w+)\\\}", group, re.escape(template))
        self.routes.append((method, re.compile(f"^{pattern}$"), handler))

    # --- the one aiohttp entry point -----------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path.removeprefix(API_PREFIX)
        method = request.method
        state = self.fake.state
        received_at = time.monotonic()
        body = await self._read_body(request)
        await self._uplink(received_at, body.size)
        try:
            response = await self._dispatch(request, method, path, body)
        except HttpError as exc:
            if exc.violation:
                kind, _, detail = exc.violation.partition(": ")
                state.violations.append(Violation(kind, method, path, detail or str(exc.body)))
            response = json_response(exc.body, exc.status)
        except Exception as exc:
            # A bug in the fake, not a Discord answer: record it for run_bot to report, and answer a
            # 4xx so discord.py fails at once instead of retrying a 5xx for seconds.
            log.exception("fake Discord crashed handling %s %s", method, path)
            state.internal_errors.append(f"{method} {path}: {exc!r}")
            response = json_response(error_body(0, f"fake Discord crashed: {exc!r}"), 400)
        record = RequestRecord(
            method, path, response.status, time.monotonic(), body.json, received_at, body.size
        )
        state.requests.append(record)
        if response.status == 404 and not self._known(method, path):
            log.warning("fake Discord has no route for %s %s", method, path)
            state.unknown_routes.append(record)
        state.notify()
        return response

    def _known(self, method: str, path: str) -> bool:
        return any(m == method and p.match(path) for m, p, _ in self.routes)

    async def _dispatch(self, request: web.Request, method: str, path: str, body: Body) -> web.Response:
        for failure in self.failures:
            if failure.remaining > 0 and failure.matches(method, path):
                failure.remaining -= 1
                headers = {"Via": "1.1 fake", "Retry-After": "0.1"} if failure.status == 429 else None
                return json_response(failure.body, failure.status, headers)
        for route_method, pattern, handler in self.routes:
            match = pattern.match(path)
            if match and route_method == method:
                self._check_auth(request, path)
                result = await handler(body=body, query=request.query, **match.groupdict())
                if isinstance(result, web.Response):
                    return result
                return json_response(result)
        return json_response(error_body(0, "404: Not Found"), 404)

    def _check_auth(self, request: web.Request, path: str) -> None:
        # Interaction callbacks and interaction webhooks are authorised by their token, not the bot's.
        if path.startswith(("/interactions/", "/webhooks/")):
            return
        expected = self.fake.config.bot_token
        if expected is not None and request.headers.get("Authorization") != f"Bot {expected}":
            raise HttpError(401, error_body(0, "401: Unauthorized"))

    async def _uplink(self, received_at: float, size: int) -> None:
        """Hold the answer until `size` bytes could have crossed the configured uplink: loopback
        delivers them at once, a home server's uplink does not."""
        rate = self.fake.config.uplink_bytes_per_s
        if rate is None or size <= 0:
            return
        await asyncio.sleep(max(0.0, received_at + size / rate - time.monotonic()))

    async def _read_body(self, request: web.Request) -> Body:
        if not request.can_read_body:
            return Body()
        if request.content_type.startswith("multipart/"):
            body = Body()
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                name = getattr(part, "name", None) or ""
                data = await part.read()  # type: ignore[union-attr]
                body.size += len(data)
                if name == "payload_json":
                    body.json = json.loads(data)
                elif match := re.fullmatch(r"files\[(\d+)\]", name):
                    filename = getattr(part, "filename", None) or f"file{match[1]}"
                    # discord.py labels every file application/octet-stream; Discord reports the real type.
                    sent = part.headers.get("Content-Type", "application/octet-stream")
                    ctype = guess_content_type(filename) or sent
                    body.files[int(match[1])] = Attachment.of(bytes(data), filename, ctype)
            body.size = max(body.size, request.content_length or 0)
            return body
        raw = await request.read()
        return Body(json=json.loads(raw) if raw else None, size=len(raw))

    # --- identity and application ----------------------------------------------------------------------

    async def get_gateway(self, **_: Any) -> JSON:
        return {"url": self.fake.gateway_url.rstrip("/")}

    async def get_bot_gateway(self, **_: Any) -> JSON:
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        shards = self.fake.config.recommended_shards
        return {"url": self.fake.gateway_url.rstrip("/"), "shards": shards, "session_start_limit": limit}

    async def get_me(self, **_: Any) -> JSON:
        return self.fake.world.bot_user.to_payload() | {"verified": True, "mfa_enabled": False}

    async def get_user(self, uid: str, **_: Any) -> JSON:
        user = self.fake.world.user(int(uid))
        if user is None:
            raise not_found(10013, "User")
        return user.to_payload()

    async def create_dm(self, body: Body, **_: Any) -> JSON:
        user = self.fake.world.user(int(body.json["recipient_id"]))
        if user is None:
            raise not_found(10013, "User")
        return self.fake.dm_channel(user).to_payload()

    async def get_application(self, **_: Any) -> JSON:
        world = self.fake.world
        return {
            "id": str(world.application_id),
            "name": world.bot_user.name,
            "icon": None,
            "description": "",
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": world.owner.to_payload(),
            "verify_key": "0" * 64,
            "flags": 0,
            "team": None,
            "bot": world.bot_user.to_payload(),
        }

    # --- commands -------------------------------------------------------------------------------------

    def _command_list(self, app: str, gid: str | None) -> list[JSON]:
        if int(app) != self.fake.world.application_id:
            raise not_found(10002, "Application")
        state = self.fake.state
        return state.global_commands if gid is None else state.guild_commands.setdefault(int(gid), [])

    def _stored_command(self, command: JSON, gid: str | None, existing: list[JSON]) -> JSON:
        old = next(
            (
                c
                for c in existing
                if c["name"] == command["name"] and c.get("type", 1) == command.get("type", 1)
            ),
            None,
        )
        stored = {"type": 1, "description": "", "options": [], "default_member_permissions": None, **command}
        stored |= {
            "id": old["id"] if old else str(new_snowflake()),
            "application_id": str(self.fake.world.application_id),
        }
        stored["version"] = str(new_snowflake())
        if gid is not None:
            stored["guild_id"] = gid
        return stored

    async def get_commands(self, app: str, gid: str | None = None, **_: Any) -> list[JSON]:
        return self._command_list(app, gid)

    async def put_commands(self, app: str, body: Body, gid: str | None = None, **_: Any) -> list[JSON]:
        existing = self._command_list(app, gid)
        self.check(check_commands(list(body.json or [])), "invalid_command")
        commands = [self._stored_command(c, gid, existing) for c in body.json or []]
        existing[:] = commands
        self.fake.state.command_syncs.append((None if gid is None else int(gid), time.monotonic()))
        return commands

    async def post_command(self, app: str, body: Body, gid: str | None = None, **_: Any) -> JSON:
        existing = self._command_list(app, gid)
        self.check(check_command(body.json), "invalid_command")
        stored = self._stored_command(body.json, gid, existing)
        existing[:] = [c for c in existing if c["id"] != stored["id"]] + [stored]
        return stored

    # --- channels and messages ------------------------------------------------------------------------

    def _channel(self, cid: str) -> FakeChannel:
        channel = self.fake.find_channel(int(cid))
        if channel is None:
            raise not_found(10003, "Channel")
        return channel

    def _channel_message(self, cid: str, mid: str) -> MessageRecord:
        self._channel(cid)
        message = self.fake.state.messages.get(int(mid)) if mid.isdigit() else None
        # Ephemeral messages exist only for their user; channel routes cannot see them.
        if message is None or message.deleted or message.channel_id != int(cid) or message.ephemeral:
            raise not_found(10008, "Message")
        return message

    async def get_channel(self, cid: str, **_: Any) -> JSON:
        return self._channel(cid).to_payload()

    async def post_message(self, cid: str, body: Body, **_: Any) -> JSON:
        channel = self._channel(cid)
        payload = dict(body.json or {})
        payload["flags"] = int(payload.get("flags") or 0) & ~EPHEMERAL
        message = self.create_message(channel, payload, body.files)
        return message.to_payload(self.fake.url)

    async def list_messages(self, cid: str, query: Any, **_: Any) -> list[JSON]:
        self._channel(cid)
        found = [m for m in self.fake.state.messages_in(int(cid)) if not m.ephemeral]
        if "before" in query:
            found = [m for m in found if m.id < int(query["before"])]
        if "after" in query:
            found = [m for m in found if m.id > int(query["after"])]
        found.reverse()
        return [m.to_payload(self.fake.url) for m in found[: int(query.get("limit", 50))]]

    async def get_message(self, cid: str, mid: str, **_: Any) -> JSON:
        return self._channel_message(cid, mid).to_payload(self.fake.url)

    async def edit_message(self, cid: str, mid: str, body: Body, **_: Any) -> JSON:
        message = self._channel_message(cid, mid)
        self.apply_edit(message, body.json or {}, body.files)
        return message.to_payload(self.fake.url)

    async def delete_message(self, cid: str, mid: str, **_: Any) -> web.Response:
        message = self._channel_message(cid, mid)
        self.fake.delete_message(message)
        return web.Response(status=204)

    async def no_content(self, **_: Any) -> web.Response:
        return web.Response(status=204)

    # --- guilds ---------------------------------------------------------------------------------------

    def _guild(self, gid: str) -> FakeGuild:
        try:
            return self.fake.world.guild(int(gid))
        except KeyError:
            raise not_found(10004, "Guild") from None

    async def get_guild(self, gid: str, **_: Any) -> JSON:
        return self._guild(gid).to_payload()

    async def get_guild_channels(self, gid: str, **_: Any) -> list[JSON]:
        return [c.to_payload() for c in self._guild(gid).channels]

    async def get_guild_roles(self, gid: str, **_: Any) -> list[JSON]:
        return [r.to_payload() for r in self._guild(gid).roles]

    async def list_members(self, gid: str, **_: Any) -> list[JSON]:
        return [m.to_payload() for m in self._guild(gid).members]

    async def get_member(self, gid: str, uid: str, **_: Any) -> JSON:
        member = self._guild(gid).member(int(uid))
        if member is None:
            raise not_found(10007, "Member")
        return member.to_payload()

    # --- message logic shared with interaction routes -------------------------------------------------

    def check(self, problems: list[Problem], kind: str = "invalid_form_body") -> None:
        """Answer 400 with Discord's nested errors if there are problems."""
        if problems:
            body = form_error(problems)
            raise HttpError(400, body, f"{kind}: " + "; ".join(f"{p.path}: {p.message}" for p in problems))

    def check_files(self, files: dict[int, Attachment]) -> None:
        limit = self.fake.config.attachment_size_limit
        too_big = [f for f in files.values() if f.size > limit]
        if too_big:
            names = ", ".join(f"{f.filename} ({f.size} bytes)" for f in too_big)
            raise HttpError(
                413, error_body(40005, "Request entity too large"), f"attachment_too_large: {names} > {limit}"
            )

    def create_message(
        self,
        channel: FakeChannel,
        body: JSON,
        files: dict[int, Attachment],
        *,
        interaction: InteractionRecord | None = None,
        prefix: str = "",
    ) -> MessageRecord:
        """Validate and record a new message from the bot."""
        max_content = self.fake.config.max_content_length
        self.check(
            check_message(body, prefix=prefix, creating=True, max_content=max_content, files=len(files))
        )
        self.check_files(files)
        message = self.record_message(channel, interaction)
        self._apply(message, body, files)
        message.snapshot()
        self.fake.message_event("MESSAGE_CREATE", message)
        return message

    def record_message(
        self, channel: FakeChannel, interaction: InteractionRecord | None, flags: int = 0
    ) -> MessageRecord:
        """Register an empty message from the bot (the caller fills it and takes the first snapshot)."""
        message = MessageRecord(
            id=new_snowflake(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=self.fake.world.bot_user,
            flags=flags,
            interaction_id=interaction.id if interaction else None,
            webhook_token=interaction.token if interaction else None,
        )
        self.fake.state.messages[message.id] = message
        return message

    def apply_edit(
        self, message: MessageRecord, body: JSON, files: dict[int, Attachment], *, prefix: str = ""
    ) -> None:
        """Validate and apply an edit, keeping the previous state in `message.history`."""
        max_content = self.fake.config.max_content_length
        self.check(check_message(body, prefix=prefix, creating=False, max_content=max_content))
        self.check_files(files)
        self._apply(message, body, files, editing=True)
        message.flags &= ~LOADING
        message.edited_timestamp = iso_now()
        message.snapshot()
        self.fake.message_event("MESSAGE_UPDATE", message)

    def _apply(
        self, message: MessageRecord, body: JSON, files: dict[int, Attachment], *, editing: bool = False
    ) -> None:
        if "content" in body:
            message.content = body["content"] or ""
        if "components" in body:
            message.components = list(body["components"] or [])
        if "embeds" in body:
            message.embeds = list(body["embeds"] or [])
        if "flags" in body and body["flags"] is not None:
            keep = message.flags & (EPHEMERAL | LOADING) if editing else 0
            message.flags = keep | (int(body["flags"]) & SENDABLE_FLAGS & ~(EPHEMERAL if editing else 0))
        message.attachments = _attachments(
            message.attachments if editing else [], body.get("attachments"), files
        )


def _attachments(
    current: list[Attachment], listed: list[JSON] | None, files: dict[int, Attachment]
) -> list[Attachment]:
    """Attachments after a create/edit: a body `attachments` list keeps old ones by id, names new files."""
    if listed is None:
        return [*current, *(files[i] for i in sorted(files))]
    by_id = {str(a.id): a for a in current}
    result: list[Attachment] = []
    used: set[int] = set()
    for entry in listed:
        key = str(entry.get("id"))
        if key in by_id:
            result.append(by_id[key])
        elif key.isdigit() and int(key) in files:
            index = int(key)
            uploaded = files[index]
            used.add(index)
            filename = entry.get("filename") or uploaded.filename
            result.append(replace(uploaded, filename=filename, description=entry.get("description")))
    result += [files[i] for i in sorted(files) if i not in used]
    return result
