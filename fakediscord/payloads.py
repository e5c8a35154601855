"""Builders for the JSON objects Discord sends: users, members, roles, channels, guilds, messages.

The world the fake serves is described by small frozen dataclasses (`FakeUser`, `FakeGuild`, …); each
has `to_payload()` producing exactly the fields discord.py 2.x reads, so a typo shows up as a
`KeyError` inside discord.py rather than as a silently wrong object.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ADMINISTRATOR",
    "DEFAULT_MEMBER_PERMISSIONS",
    "MANAGE_GUILD",
    "FakeChannel",
    "FakeGuild",
    "FakeMember",
    "FakeRole",
    "FakeUser",
    "World",
    "default_guild",
    "iso_now",
    "new_snowflake",
    "shard_of",
    "snowflake_on_shard",
]

DISCORD_EPOCH_MS = 1_420_070_400_000
ADMINISTRATOR = 0x8
MANAGE_GUILD = 0x20
# View channel, send messages, embed links, attach files, read history, use application commands.
DEFAULT_MEMBER_PERMISSIONS = 0x400 | 0x800 | 0x4000 | 0x8000 | 0x10000 | 0x80000000

_counter = itertools.count(1)

JSON = dict[str, Any]


def new_snowflake() -> int:
    """A fresh, increasing Discord-style id whose timestamp part is now."""
    ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
    return (ms << 22) | (next(_counter) & 0x3FFFFF)


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard Discord serves a guild on: `(guild_id >> 22) % shard_count`."""
    return (guild_id >> 22) % shard_count


def snowflake_on_shard(shard_id: int, shard_count: int) -> int:
    """A fresh id whose guild would live on shard `shard_id` of `shard_count` (its time is at most
    `shard_count - 1` ms ago)."""
    if not 0 <= shard_id < shard_count:
        raise ValueError(f"shard {shard_id} does not exist among {shard_count} shards (ids run 0 to count-1)")
    ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
    ms -= (ms - shard_id) % shard_count
    return (ms << 22) | (next(_counter) & 0x3FFFFF)


def iso_now() -> str:
    """The current time as Discord writes timestamps."""
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class FakeUser:
    """A Discord user; `bot=True` for the bot's own account."""

    id: int
    name: str
    bot: bool = False

    def to_payload(self) -> JSON:
        return {
            "id": str(self.id),
            "username": self.name,
            "global_name": self.name,
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
            "flags": 0,
        }


@dataclass(frozen=True)
class FakeRole:
    """A guild role; the @everyone role has the guild's id."""

    id: int
    name: str
    permissions: int = 0
    position: int = 0

    def to_payload(self) -> JSON:
        return {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }


@dataclass(frozen=True)
class FakeChannel:
    """A guild text channel (type 0) or a DM (type 1, `recipient` set); `nsfw` marks it age-restricted."""

    id: int
    name: str
    guild_id: int | None = None
    type: int = 0
    recipient: FakeUser | None = None
    nsfw: bool = False

    def to_payload(self) -> JSON:
        payload: JSON = {"id": str(self.id), "type": self.type, "last_message_id": None, "flags": 0}
        if self.type == 1 and self.recipient is not None:
            payload["recipients"] = [self.recipient.to_payload()]
            return payload
        payload.update(
            name=self.name,
            position=0,
            permission_overwrites=[],
            nsfw=self.nsfw,
            parent_id=None,
            topic=None,
            rate_limit_per_user=0,
        )
        if self.guild_id is not None:
            payload["guild_id"] = str(self.guild_id)
        return payload


@dataclass(frozen=True)
class FakeMember:
    """A user's membership in a guild; `permissions` is the resolved bitfield interactions carry."""

    user: FakeUser
    roles: tuple[int, ...] = ()
    permissions: int = DEFAULT_MEMBER_PERMISSIONS
    nick: str | None = None

    def to_payload(self, *, with_permissions: bool = False) -> JSON:
        payload: JSON = {
            "user": self.user.to_payload(),
            "roles": [str(r) for r in self.roles],
            "nick": self.nick,
            "avatar": None,
            "joined_at": "2024-01-01T00:00:00+00:00",
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
        }
        if with_permissions:
            payload["permissions"] = str(self.permissions)
        return payload


@dataclass(frozen=True)
class FakeGuild:
    """A guild with its channels, roles and members (the bot's own member is added by the server)."""

    id: int
    name: str
    owner_id: int
    channels: tuple[FakeChannel, ...]
    roles: tuple[FakeRole, ...]
    members: tuple[FakeMember, ...]

    def channel(self, name_or_id: str | int) -> FakeChannel:
        """The channel with this name or id."""
        for channel in self.channels:
            if name_or_id in (channel.name, channel.id):
                return channel
        raise KeyError(f"guild {self.name!r} has no channel {name_or_id!r}")

    def member(self, user_id: int) -> FakeMember | None:
        """This user's membership, or None."""
        return next((m for m in self.members if m.user.id == user_id), None)

    def with_channel(self, channel: FakeChannel) -> FakeGuild:
        """This guild with one more channel (names are unique, as the fake looks channels up by name)."""
        if any(c.name == channel.name for c in self.channels):
            raise ValueError(f"guild {self.name!r} already has a channel #{channel.name}")
        return replace(self, channels=(*self.channels, channel))

    def to_payload(self, *, extra_members: tuple[FakeMember, ...] = ()) -> JSON:
        members = [m.to_payload() for m in (*self.members, *extra_members)]
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "owner_id": str(self.owner_id),
            "unavailable": False,
            "member_count": len(members),
            "large": False,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "afk_timeout": 300,
            "features": [],
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "system_channel_flags": 0,
            "joined_at": "2024-01-01T00:00:00+00:00",
            "roles": [r.to_payload() for r in self.roles],
            "channels": [c.to_payload() for c in self.channels],
            "members": members,
            "emojis": [],
            "stickers": [],
            "threads": [],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }


@dataclass(frozen=True)
class World:
    """Everything the fake serves: the bot's account, the application and the guilds."""

    bot_user: FakeUser
    application_id: int
    owner: FakeUser
    guilds: tuple[FakeGuild, ...] = field(default=())

    def guild(self, guild_id: int | None = None) -> FakeGuild:
        """The guild with this id, or the first guild."""
        if guild_id is None:
            return self.guilds[0]
        for guild in self.guilds:
            if guild.id == guild_id:
                return guild
        raise KeyError(f"no guild with id {guild_id}")

    def user(self, user_id: int) -> FakeUser | None:
        """A known user by id (bot, owner or any member)."""
        if user_id == self.bot_user.id:
            return self.bot_user
        for guild in self.guilds:
            member = guild.member(user_id)
            if member is not None:
                return member.user
        return self.owner if self.owner.id == user_id else None


def default_guild(
    *, guild_id: int | None = None, owner: FakeUser | None = None, name: str = "Test Guild"
) -> FakeGuild:
    """One guild with #general and #other, an Admin role, an admin member and a plain member."""
    gid = guild_id or new_snowflake()
    admin_role = FakeRole(
        id=new_snowflake(), name="Admin", permissions=ADMINISTRATOR | MANAGE_GUILD, position=1
    )
    owner = owner or FakeUser(id=new_snowflake(), name="owner")
    admin = FakeMember(user=owner, roles=(admin_role.id,), permissions=(1 << 41) - 1)
    plain = FakeMember(user=FakeUser(id=new_snowflake(), name="alice"))
    other = FakeMember(user=FakeUser(id=new_snowflake(), name="bob"))
    return FakeGuild(
        id=gid,
        name=name,
        owner_id=owner.id,
        channels=(
            FakeChannel(id=new_snowflake(), name="general", guild_id=gid),
            FakeChannel(id=new_snowflake(), name="other", guild_id=gid),
        ),
        roles=(FakeRole(id=gid, name="@everyone", permissions=DEFAULT_MEMBER_PERMISSIONS), admin_role),
        members=(admin, plain, other),
    )
