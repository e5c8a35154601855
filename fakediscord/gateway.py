"""The fake gateway websocket: HELLO, heartbeats, IDENTIFY → READY → GUILD_CREATE, member chunks.

Frames go out as plain text JSON: discord.py asks for zlib-stream but parses text frames as JSON.
RESUME is not supported (tests run bots with `reconnect=False`); a client that disconnects is
simply dropped.
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

from fakediscord.payloads import JSON, FakeMember

if TYPE_CHECKING:
    from fakediscord.server import FakeDiscord

__all__ = ["GatewaySession", "handle_gateway"]

log = logging.getLogger(__name__)

ALL_PERMISSIONS = (1 << 41) - 1


class GatewaySession:
    """One connected client: its socket, sequence number and identify payload."""

    def __init__(self, fake: FakeDiscord, ws: web.WebSocketResponse) -> None:
        self.fake = fake
        self.ws = ws
        self.seq = 0
        self.session_id = uuid.uuid4().hex
        self.identify: JSON | None = None
        self._send_lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return self.identify is not None and not self.ws.closed

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
        await self.send(0, data, event)

    async def on_identify(self, data: JSON) -> None:
        self.identify = data
        fake = self.fake
        fake.state.identifies.append(data)
        shard = data.get("shard") or [0, 1]
        bot = fake.world.bot_user.to_payload() | {"verified": True, "mfa_enabled": False, "locale": "en-US"}
        await self.dispatch(
            "READY",
            {
                "v": 10,
                "user": bot,
                "guilds": [{"id": str(g.id), "unavailable": True} for g in fake.world.guilds],
                "session_id": self.session_id,
                "resume_gateway_url": fake.gateway_url,
                "application": {"id": str(fake.world.application_id), "flags": 0},
                "shard": shard,
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "user_settings": {},
                "geo_ordered_rtc_regions": [],
            },
        )
        for guild in fake.world.guilds:
            await self.dispatch("GUILD_CREATE", guild.to_payload(extra_members=(self.bot_member(),)))
        fake.state.notify()

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
