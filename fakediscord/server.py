"""`FakeDiscord`: a loopback Discord (REST + gateway) on 127.0.0.1 that the real discord.py client
talks to, plus the driving API tests use to act as users (slash commands, clicks, modal submits).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from fakediscord import commands as cmd
from fakediscord.cdn import FakeCdn, guess_content_type
from fakediscord.gateway import GatewaySession, handle_gateway
from fakediscord.interactions import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    COMPONENT,
    MODAL_SUBMIT,
    InteractionRoutes,
)
from fakediscord.payloads import (
    JSON,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeUser,
    World,
    default_guild,
    new_snowflake,
    snowflake_on_shard,
)
from fakediscord.rest import Failure, RestApi
from fakediscord.rules import error_body
from fakediscord.state import Attachment, FakeState, InteractionRecord, MessageRecord

__all__ = ["FakeConfig", "FakeDiscord", "FakeDiscordError"]

ALL_PERMISSIONS = (1 << 41) - 1
GUILDS, GUILD_MESSAGES, DIRECT_MESSAGES = 1 << 0, 1 << 9, 1 << 12
UserLike = FakeMember | FakeUser | int


class FakeDiscordError(Exception):
    """A test asked the fake for something Discord's client would not let a user do."""


@dataclass(frozen=True)
class FakeConfig:
    """Knobs for one fake; production values by default."""

    heartbeat_interval_ms: int = 41_250
    ack_deadline_s: float = 3.0
    token_lifetime_s: float = 15 * 60
    attachment_size_limit: int = 10 * 1024 * 1024
    max_content_length: int = 2000
    bot_token: str | None = None
    """If set, REST calls must carry `Authorization: Bot <this>` (else 401, as for a bad token)."""
    recommended_shards: int = 1
    """The shard count `GET /gateway/bot` recommends (what discord.py runs without a `shard_count`)."""
    max_guilds_per_session: int = 2500
    """An IDENTIFY whose session would serve more guilds is closed with 4011 (Sharding required)."""
    uplink_bytes_per_s: float | None = None
    """If set, a REST request's body takes at least `bytes / this` seconds from its arrival to its
    answer, as over a home server's uplink at that rate (off by default: loopback speed)."""


def default_world() -> World:
    bot = FakeUser(id=new_snowflake(), name="imaginebot", bot=True)
    owner = FakeUser(id=new_snowflake(), name="owner")
    return World(bot_user=bot, application_id=bot.id, owner=owner, guilds=(default_guild(owner=owner),))


class FakeDiscord:
    """The fake server; `async with FakeDiscord() as fake:` starts it on a free port."""

    def __init__(self, config: FakeConfig | None = None, *, world: World | None = None) -> None:
        self.config = config or FakeConfig()
        self.world = world or default_world()
        self.state = FakeState()
        self.cdn = FakeCdn(self.state)
        self.sessions: list[GatewaySession] = []
        self.tokens: dict[str, InteractionRecord] = {}
        self._dm_channels: dict[int, FakeChannel] = {}
        self.interactions = InteractionRoutes(self)
        self.rest = RestApi(self)
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1 at a free port."""
        app = web.Application(client_max_size=1024**3)
        app.router.add_get("/gateway/", self._gateway)
        app.router.add_get("/gateway", self._gateway)  # `GET /gateway/bot`'s url, as Discord's, has no path
        app.router.add_get(r"/attachments/{aid:\d+}/{filename}", self.cdn.serve)
        app.router.add_route("*", "/{tail:.*}", self.rest.handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        # Bind the socket ourselves so the free port the OS picked is known without private attributes.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        """Close gateway connections (code 1000) and stop listening."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for session in list(self.sessions):
            await session.ws.close(code=1000)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """What `discord.http.Route.BASE` must be set to."""
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """What `DiscordWebSocket.DEFAULT_GATEWAY` must be set to (the trailing slash matters)."""
        return f"ws://127.0.0.1:{self.port}/gateway/"

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        return await handle_gateway(self, request)

    # --- the world -----------------------------------------------------------------------------------

    @property
    def bot_user(self) -> FakeUser:
        return self.world.bot_user

    @property
    def guild(self) -> FakeGuild:
        """The first (usually only) guild."""
        return self.world.guilds[0]

    @property
    def channel(self) -> FakeChannel:
        """The first guild's first channel (#general)."""
        return self.guild.channels[0]

    @property
    def admin(self) -> FakeMember:
        """The guild owner, with every permission."""
        return self.guild.members[0]

    @property
    def member(self) -> FakeMember:
        """A plain member without Manage Server."""
        return self.guild.members[1]

    @property
    def other_member(self) -> FakeMember:
        """A second plain member."""
        return self.guild.members[2]

    def find_channel(self, channel_id: int) -> FakeChannel | None:
        for guild in self.world.guilds:
            for channel in guild.channels:
                if channel.id == channel_id:
                    return channel
        return next((c for c in self._dm_channels.values() if c.id == channel_id), None)

    def add_guild(self, *, shard: tuple[int, int] | None = None, name: str = "Second Guild") -> FakeGuild:
        """Another guild like the first (#general, #other; owner, alice, bob), on shard `(id, count)`
        if given. Sessions already serving it get its GUILD_CREATE, as when a bot joins a server."""
        guild_id = snowflake_on_shard(*shard) if shard is not None else new_snowflake()
        guild = default_guild(guild_id=guild_id, owner=self.world.owner, name=name)
        self.world = replace(self.world, guilds=(*self.world.guilds, guild))
        for session in self.sessions:
            if session.ready and session.serves(guild_id):
                payload = guild.to_payload(extra_members=(session.bot_member(),))
                self._in_background(session.dispatch("GUILD_CREATE", payload))
        return guild

    def add_channel(self, name: str, *, nsfw: bool = False, guild: FakeGuild | None = None) -> FakeChannel:
        """A new text channel in `guild` (default the first), age-restricted with `nsfw=True`. Sessions
        serving the guild get CHANNEL_CREATE in the background, as when a moderator adds one."""
        current = self.world.guild((guild or self.guild).id)
        channel = FakeChannel(id=new_snowflake(), name=name, guild_id=current.id, nsfw=nsfw)
        updated = current.with_channel(channel)
        guilds = tuple(updated if g.id == current.id else g for g in self.world.guilds)
        self.world = replace(self.world, guilds=guilds)
        self.emit("CHANNEL_CREATE", channel.to_payload(), guild_id=current.id, intent=GUILDS)
        return channel

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        """The bot's DM channel with this user (created on first use)."""
        if user.id not in self._dm_channels:
            self._dm_channels[user.id] = FakeChannel(id=new_snowflake(), name="", type=1, recipient=user)
        return self._dm_channels[user.id]

    # --- the CDN -------------------------------------------------------------------------------------

    def upload(self, data: bytes, filename: str, content_type: str | None = None) -> Attachment:
        """A file a user attaches to a slash command: pass it as an attachment option's value.

        It is served at its `url(fake.url)` (also in the interaction payload); `content_type` is guessed
        from the filename when None, and width/height are measured for images, as Discord does.
        """
        guessed = content_type if content_type is not None else guess_content_type(filename)
        return self.cdn.add(Attachment.of(bytes(data), filename, guessed, ephemeral=True))

    def cdn_remove(self, target: Attachment | str | int) -> None:
        """Delete a file from the CDN (an upload or a bot-posted attachment, by record, URL or id):
        its links answer 404 from now on, as after Discord has dropped it."""
        self.cdn.remove(target)

    # --- waiting and reading -------------------------------------------------------------------------

    async def wait_for(
        self,
        predicate: Callable[[FakeState], bool],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - a bounded wait is this helper's API
        what: str = "",
    ) -> None:
        """Wait until `predicate(state)` holds (raises `WaitTimeout` after `timeout`)."""
        await self.state.wait_for(predicate, timeout=timeout, what=what)

    async def wait_for_message(
        self,
        predicate: Callable[[MessageRecord], bool] = lambda _: True,
        *,
        channel: FakeChannel | int | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - a bounded wait is this helper's API
        after: int = 0,
    ) -> MessageRecord:
        """The first live message (id > `after`, in `channel` if given) matching `predicate`; waits."""
        channel_id = channel.id if isinstance(channel, FakeChannel) else channel
        found: list[MessageRecord] = []

        def check(state: FakeState) -> bool:
            for message in state.all_messages():
                if message.id > after and channel_id in (None, message.channel_id) and predicate(message):
                    found.append(message)
                    return True
            return False

        await self.wait_for(check, timeout=timeout, what="a matching message")
        return found[0]

    def messages_in(self, channel: FakeChannel | int | None = None) -> list[MessageRecord]:
        """Live messages in a channel (default #general), oldest first, ephemeral ones included."""
        channel = channel or self.channel
        return self.state.messages_in(channel.id if isinstance(channel, FakeChannel) else channel)

    async def wait_until_identified(self, timeout: float = 5.0) -> GatewaySession:  # noqa: ASYNC109 - a bounded wait is this helper's API
        await self.wait_for(
            lambda _: any(s.ready for s in self.sessions), timeout=timeout, what="a bot to IDENTIFY"
        )
        return next(s for s in self.sessions if s.ready)

    async def session_for(self, guild_id: int | None, timeout: float = 5.0) -> GatewaySession:  # noqa: ASYNC109 - a bounded wait is this helper's API
        """The newest identified session serving this guild (None: DMs, shard 0); waits for one."""

        def serving() -> list[GatewaySession]:
            return [s for s in self.sessions if s.ready and s.serves(guild_id)]

        what = f"a gateway session serving guild {guild_id}"
        await self.wait_for(lambda _: bool(serving()), timeout=timeout, what=what)
        return serving()[-1]

    async def wait_until_synced(self, count: int = 1, timeout: float = 10.0) -> GatewaySession:  # noqa: ASYNC109
        """Wait until a client has identified and `count` command syncs happened (for subprocess bots)."""
        await self.wait_for(lambda s: len(s.command_syncs) >= count, timeout=timeout, what="a command sync")
        return await self.wait_until_identified(timeout=timeout)

    # --- rules and failures --------------------------------------------------------------------------

    def expire_token(self, token: str | InteractionRecord) -> None:
        """Make this interaction's token expire now: its webhooks answer 401 Invalid Webhook Token."""
        record = token if isinstance(token, InteractionRecord) else self.tokens[token]
        record.token_expired = True

    def fail_next(
        self,
        route_pattern: str,
        status: int = 503,
        times: int = 1,
        *,
        code: int = 0,
        message: str | None = None,
    ) -> None:
        """Answer the next `times` requests matching `route_pattern` with `status`.

        The pattern is an fnmatch pattern over the path after `/api/v10` (`/channels/*/messages`),
        optionally prefixed with a method (`POST /webhooks/*`).
        """
        text = message or ("You are being rate limited." if status == 429 else f"{status}: injected failure")
        body = error_body(code, text)
        if status == 429:
            body |= {"retry_after": 0.1, "global": False}
        self.rest.failures.append(Failure(route_pattern, status, times, body))

    def emit(self, event: str, data: JSON, *, guild_id: int | None, intent: int | None = None) -> None:
        """Dispatch in the background to identified clients serving `guild_id` (None: DMs) whose
        intents include `intent`."""
        for session in self.sessions:
            if session.ready and session.serves(guild_id) and session.has_intent(intent):
                self._in_background(session.dispatch(event, session.visible(data)))

    def _in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def message_event(self, event: str, message: MessageRecord) -> None:
        """MESSAGE_CREATE/UPDATE/DELETE as Discord sends them (never for ephemeral messages)."""
        if message.ephemeral:
            return
        intent = GUILD_MESSAGES if message.guild_id is not None else DIRECT_MESSAGES
        if event == "MESSAGE_DELETE":
            data: JSON = {"id": str(message.id), "channel_id": str(message.channel_id)}
            if message.guild_id is not None:
                data["guild_id"] = str(message.guild_id)
        else:
            data = message.to_payload(self.url)
        self.emit(event, data, guild_id=message.guild_id, intent=intent)

    def delete_message(self, message: MessageRecord) -> None:
        message.deleted = True
        self.message_event("MESSAGE_DELETE", message)

    async def post_as_user(
        self, content: str, *, user: UserLike | None = None, channel: FakeChannel | str | int | None = None
    ) -> MessageRecord:
        """A user writes `content` in a channel (default #general); the bot gets MESSAGE_CREATE."""
        guild, place = self._place(None, channel)
        await self.session_for(place.guild_id)
        member = self._member(user, guild)
        message = MessageRecord(
            id=new_snowflake(),
            channel_id=place.id,
            guild_id=place.guild_id,
            author=member.user,
            content=content,
        )
        message.snapshot()
        self.state.messages[message.id] = message
        self.message_event("MESSAGE_CREATE", message)
        self.state.notify()
        return message

    async def dispatch(self, event: str, data: JSON, *, guild_id: int | None = None) -> GatewaySession:
        """Send a gateway dispatch to the newest identified client serving `guild_id` (Discord sends
        each interaction to one connection, the guild's shard; after a restart the new process)."""
        session = await self.session_for(guild_id)
        await session.dispatch(event, data)
        return session

    # --- acting as users -----------------------------------------------------------------------------

    def _member(self, user: UserLike | None, guild: FakeGuild) -> FakeMember:
        if user is None:
            return self.member if guild is self.guild else guild.members[0]
        if isinstance(user, FakeMember):
            return user
        user_id = user if isinstance(user, int) else user.id
        member = guild.member(user_id)
        if member is not None:
            return member
        if isinstance(user, int):
            raise FakeDiscordError(f"user {user} is not a member of {guild.name!r}")
        return FakeMember(user=user)

    async def _interact(
        self,
        kind: int,
        data: JSON,
        *,
        member: FakeMember,
        guild: FakeGuild,
        channel: FakeChannel,
        permissions: int | None,
        message: MessageRecord | None = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        session = await self.session_for(guild.id)
        interaction_id = new_snowflake()
        token = f"aW50ZXJhY3Rpb246{interaction_id}:" + secrets.token_urlsafe(24)
        resolved_member = FakeMember(
            member.user, member.roles, member.permissions if permissions is None else permissions, member.nick
        )
        payload: JSON = {
            "id": str(interaction_id),
            "application_id": str(self.world.application_id),
            "type": kind,
            "data": data,
            "guild_id": str(guild.id),
            "channel_id": str(channel.id),
            "channel": channel.to_payload() | {"permissions": str(resolved_member.permissions)},
            "member": resolved_member.to_payload(with_permissions=True),
            "token": token,
            "version": 1,
            "app_permissions": str(ALL_PERMISSIONS),
            "locale": locale,
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": self.config.attachment_size_limit,
        }
        if message is not None:
            payload["message"] = message.to_payload(self.url)
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            type=kind,
            data=data,
            user=member.user,
            guild_id=guild.id,
            channel_id=channel.id,
            payload=payload,
            dispatched_at=time.monotonic(),
            state=self.state,
            message_id=message.id if message is not None else None,
            shard=session.shard,
        )
        self.state.interactions[interaction_id] = record
        self.tokens[token] = record
        await session.dispatch("INTERACTION_CREATE", payload)
        self.state.notify()
        return record

    def _place(
        self, guild: FakeGuild | None, channel: FakeChannel | str | int | None
    ) -> tuple[FakeGuild, FakeChannel]:
        # Re-read the guild: `add_channel` replaces it in the world, and a test may hold the older one.
        given = guild or self.guild
        guild = next((g for g in self.world.guilds if g.id == given.id), given)
        if channel is None:
            return guild, guild.channels[0]
        if isinstance(channel, FakeChannel):
            return guild, channel
        return guild, guild.channel(channel)

    async def slash(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: UserLike | None = None,
        guild: FakeGuild | None = None,
        channel: FakeChannel | str | int | None = None,
        permissions: int | None = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """Invoke a synced slash command as `user` (default: a plain member) and return its record.

        `name` may name a subcommand: "settings quota set". Option values are converted by the synced
        option types; users, roles and channels may be given as objects or ids and come with `resolved`.
        """
        guild, place = self._place(guild, channel)
        member = self._member(user, guild)
        perms = member.permissions if permissions is None else permissions
        data = cmd.build_command_data(
            self, name, dict(options or {}), guild=guild, channel=place, permissions=perms
        )
        return await self._interact(
            APPLICATION_COMMAND,
            data,
            member=member,
            guild=guild,
            channel=place,
            permissions=permissions,
            locale=locale,
        )

    async def autocomplete(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        focused: str,
        user: UserLike | None = None,
        guild: FakeGuild | None = None,
        channel: FakeChannel | str | int | None = None,
    ) -> InteractionRecord:
        """Send an autocomplete request (type 4) with `focused` as the option being typed."""
        guild, place = self._place(guild, channel)
        member = self._member(user, guild)
        data = cmd.build_command_data(
            self,
            name,
            dict(options),
            guild=guild,
            channel=place,
            permissions=member.permissions,
            focused=focused,
        )
        return await self._interact(
            AUTOCOMPLETE, data, member=member, guild=guild, channel=place, permissions=None
        )

    async def click(
        self,
        message: MessageRecord | int,
        custom_id: str,
        *,
        user: UserLike | None = None,
        values: list[str] | None = None,
        permissions: int | None = None,
    ) -> InteractionRecord:
        """Click the button (or pick `values` in the select) with `custom_id` on `message` as `user`."""
        record = message if isinstance(message, MessageRecord) else self.state.messages[message]
        if record.deleted:
            raise FakeDiscordError(f"message {record.id} was deleted; nobody can click it")
        component = cmd.find_component(record, custom_id)
        data: JSON = {"custom_id": custom_id, "component_type": component["type"]}
        if component["type"] != 2:
            data["values"] = list(values or [])
        channel = self.find_channel(record.channel_id)
        assert channel is not None
        guild = self.world.guild(record.guild_id) if record.guild_id else self.guild
        member = self._member(user, guild)
        return await self._interact(
            COMPONENT,
            data,
            member=member,
            guild=guild,
            channel=channel,
            permissions=permissions,
            message=record,
        )

    async def submit_modal(
        self,
        interaction: InteractionRecord,
        custom_id: str | None = None,
        values: Mapping[str, str | list[str]] | None = None,
        *,
        user: UserLike | None = None,
    ) -> InteractionRecord:
        """Submit the modal the bot opened in answer to `interaction`, filling fields by custom_id."""
        modal = interaction.modal
        if modal is None and custom_id is None:
            raise FakeDiscordError(
                f"the bot opened no modal for {interaction}; pass custom_id to submit anyway"
            )
        if modal is not None and custom_id not in (None, modal["custom_id"]):
            raise FakeDiscordError(f"the open modal is {modal['custom_id']!r}, not {custom_id!r}")
        fields = dict(values or {})
        components = cmd.modal_submission(modal, fields) if modal else cmd.plain_submission(fields)
        data: JSON = {"custom_id": custom_id or (modal or {})["custom_id"], "components": components}
        guild = self.world.guild(interaction.guild_id) if interaction.guild_id else self.guild
        channel = self.find_channel(interaction.channel_id)
        assert channel is not None
        member = self._member(user if user is not None else interaction.user, guild)
        source = self.state.messages.get(interaction.message_id) if interaction.message_id else None
        return await self._interact(
            MODAL_SUBMIT, data, member=member, guild=guild, channel=channel, permissions=None, message=source
        )
