"""The fake gateway websocket: HELLO, heartbeats, IDENTIFY → READY → GUILD_CREATE, member chunks.

Frames go out as plain text JSON: discord.py asks for zlib-stream but parses text frames as JSON.
RESUME is not supported (tests run bots with `reconnect=False`); a client that disconnects is
simply dropped.

Sharding as on Discord: IDENTIFY may carry `shard: [id, count]` (none means [0, 1]); a session
then serves the guilds with `(guild_id >> 22) % count == id`, and shard 0 also serves DMs. An
IDENTIFY whose shard does not exist is closed with 4010 (Invalid shard); one whose session would
serve more than `FakeConfig.max_guilds_per_session` guilds with 4011 (Sharding required).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from fakediscord.payloads import JSON, FakeGuild, FakeMember, shard_of

if TYPE_CHECKING:
    from fakediscord.server import FakeDiscord

__all__ = ["INVALID_SHARD", "SHARDING_REQUIRED", "GatewaySession", "handle_gateway"]

log = logging.getLogger(__name__)

ALL_PERMISSIONS = (1 << 41) - 1
INVALID_SHARD, SHARDING_REQUIRED = 4010, 4011
MESSAGE_CONTENT = 1 << 15


class GatewaySession:
    """One connected client: its socket, sequence number and identify payload."""

    def __init__(self, fake: FakeDiscord, ws: web.WebSocketResponse) -> None:
        self.fake = fake
        self.ws = ws
        self.seq = 0
        self.session_id = uuid.uuid4().hex
        self.identify: JSON | None = None
        self.shard: tuple[int, int] = (0, 1)
        """`(shard_id, shard_count)` from IDENTIFY."""
        self.dispatched: list[tuple[str, int | None]] = []
        """(event, guild id or None) of every dispatch sent on this session, READY excepted."""
        self._send_lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return self.identify is not None and not self.ws.closed

    def serves(self, guild_id: int | None) -> bool:
        """Whether Discord would send this guild's events here (`None`, a DM, goes to shard 0)."""
        shard_id, count = self.shard
        return shard_id == (0 if guild_id is None else shard_of(guild_id, count))

    def guilds(self) -> list[FakeGuild]:
        """The guilds this session serves."""
        return [g for g in self.fake.world.guilds if self.serves(g.id)]

    def has_intent(self, intent: int | None) -> bool:
        """Whether IDENTIFY asked for `intent` (None: events every session gets)."""
        return intent is None or bool(int((self.identify or {}).get("intents") or 0) & intent)

    def visible(self, data: JSON) -> JSON:
        """A message payload as this session sees it: without the message content intent Discord
        blanks what a user wrote, unless it mentions the bot."""
        bot_id = str(self.fake.world.bot_user.id)
        if "content" not in data or self.has_intent(MESSAGE_CONTENT):
            return data
        if f"<@{bot_id}>" in str(data["content"]) or (data.get("author") or {}).get("id") == bot_id:
            return data
        return data | {"content": "", "embeds": [], "attachments": [], "components": []}

    async def send(self, op: int, data: Any, event: str | None = None) -> None:
        """Send one frame; dispatches (op 0) carry the next sequence number."""
        frame: JSON = {"op": op, "d": data, "s": None, "t": event}
        async with self._send_lock:
            if op == 0:
                self.seq += 1
                frame["s"] = self.seq
            if not self.ws.closed:
                await self.ws.send_str(json.dumps(frame))

    async def dispatch(self, event: str, data: JSON) -> None:
        if event != "READY":
            guild_id = data.get("id") if event == "GUILD_CREATE" else data.get("guild_id")
            self.dispatched.append((event, None if guild_id is None else int(guild_id)))
        await self.send(0, data, event)

    async def on_identify(self, data: JSON) -> None:
        fake = self.fake
        fake.state.identifies.append(data)
        shard = (0, 1) if data.get("shard") is None else _shard(data["shard"])
        if shard is None:
            await self.refuse(INVALID_SHARD, "Invalid shard")
            return
        self.shard = shard
        guilds = self.guilds()
        if len(guilds) > fake.config.max_guilds_per_session:
            await self.refuse(SHARDING_REQUIRED, "Sharding required")
            return
        self.identify = data
        bot = fake.world.bot_user.to_payload() | {"verified": True, "mfa_enabled": False, "locale": "en-US"}
        await self.dispatch(
            "READY",
            {
                "v": 10,
                "user": bot,
                "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                "session_id": self.session_id,
                "resume_gateway_url": fake.gateway_url,
                "application": {"id": str(fake.world.application_id), "flags": 0},
                "shard": list(shard),
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "user_settings": {},
                "geo_ordered_rtc_regions": [],
            },
        )
        for guild in guilds:
            await self.dispatch("GUILD_CREATE", guild.to_payload(extra_members=(self.bot_member(),)))
        fake.state.notify()

    async def refuse(self, code: int, reason: str) -> None:
        """Close the socket with Discord's close code, as Discord answers a bad IDENTIFY."""
        log.info("fake gateway refuses IDENTIFY: %s %s", code, reason)
        self.fake.state.gateway_refusals.append((code, reason))
        self.fake.state.notify()
        await self.ws.close(code=code, message=reason.encode())

    def bot_member(self) -> FakeMember:
        return FakeMember(user=self.fake.world.bot_user, permissions=ALL_PERMISSIONS)

    async def on_request_members(self, data: JSON) -> None:
        fake = self.fake
        fake.state.member_requests.append(data)
        guild = fake.world.guild(int(data["guild_id"]))
        members = [*guild.members, self.bot_member()]
        if data.get("user_ids"):
            wanted = {int(u) for u in data["user_ids"]}
            members = [m for m in members if m.user.id in wanted]
        elif data.get("query"):
            members = [m for m in members if m.user.name.startswith(str(data["query"]))]
        if data.get("limit"):
            members = members[: int(data["limit"])]
        chunk: JSON = {
            "guild_id": str(guild.id),
            "members": [m.to_payload() for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
        }
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        await self.dispatch("GUILD_MEMBERS_CHUNK", chunk)


def _shard(value: Any) -> tuple[int, int] | None:
    """`[shard_id, shard_count]` as a pair, or None unless 0 <= shard_id < shard_count."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    shard_id, count = value
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (shard_id, count)):
        return None
    return (shard_id, count) if 0 <= shard_id < count else None


async def handle_gateway(fake: FakeDiscord, request: web.Request) -> web.WebSocketResponse:
    """Serve one gateway connection until the client or the fake closes it."""
    ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
    await ws.prepare(request)
    session = GatewaySession(fake, ws)
    fake.sessions.append(session)
    try:
        await session.send(10, {"heartbeat_interval": fake.config.heartbeat_interval_ms})
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            op, data = frame.get("op"), frame.get("d")
            if op == 1:
                fake.state.heartbeats.append(time.monotonic())
                fake.state.notify()
                await session.send(11, None)
            elif op == 2:
                await session.on_identify(data)
            elif op == 8:
                await session.on_request_members(data)
            elif op == 6:
                # No RESUME: tell the client its session is gone, as Discord does for a stale one.
                await session.send(9, False)
            else:
                log.debug("fake gateway ignores op %s", op)
    except ConnectionResetError:
        log.debug("fake gateway: client reset the connection")
    finally:
        with contextlib.suppress(ValueError):
            fake.sessions.remove(session)
        fake.state.gateway_closed += 1
        fake.state.notify()
    return ws
