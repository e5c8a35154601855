"""What the fake Discord saw and did: messages with their edit history, interactions and their
callbacks, synced commands, heartbeats, unknown routes and rule violations.

Records are plain mutable dataclasses owned by `FakeState`; tests read them, the server writes them.
Every write calls `FakeState.notify()` so `FakeState.wait_for(...)` wakes up.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fakediscord.cdn import attachment_path, image_size, signed_url
from fakediscord.payloads import JSON, FakeUser, iso_now, new_snowflake

__all__ = [
    "EPHEMERAL",
    "LOADING",
    "Attachment",
    "CallbackRecord",
    "FakeState",
    "InteractionRecord",
    "MessageRecord",
    "Revision",
    "Violation",
    "WaitTimeout",
]

EPHEMERAL = 1 << 6
LOADING = 1 << 7
POLL_S = 0.02


class WaitTimeout(AssertionError):
    """A `wait_for` condition did not become true in time; the message says what was awaited."""


@dataclass(frozen=True)
class Attachment:
    """A file on the fake's CDN, bytes included: one the bot posted (so a test can open the PNG) or
    one a user uploaded with `FakeDiscord.upload` (`ephemeral`, as slash-command uploads are)."""

    id: int
    filename: str
    data: bytes = field(repr=False)
    content_type: str | None = "application/octet-stream"
    """None when Discord could not tell the type (the payload then has no `content_type`)."""
    description: str | None = None
    width: int | None = None
    height: int | None = None
    ephemeral: bool = False

    @classmethod
    def of(
        cls,
        data: bytes,
        filename: str,
        content_type: str | None,
        *,
        attachment_id: int | None = None,
        ephemeral: bool = False,
    ) -> Attachment:
        """A file as Discord stores it: width and height measured when it is an image."""
        size = image_size(data)
        return cls(
            id=new_snowflake() if attachment_id is None else attachment_id,
            filename=filename,
            data=data,
            content_type=content_type,
            width=size[0] if size else None,
            height=size[1] if size else None,
            ephemeral=ephemeral,
        )

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def spoiler(self) -> bool:
        """Shown blurred: Discord marks spoilers by the filename (discord.py's `File(spoiler=True)`)."""
        return self.filename.startswith("SPOILER_")

    def url(self, base_url: str) -> str:
        """A freshly signed CDN link to this file."""
        return signed_url(base_url, attachment_path(self.id, self.filename))

    def to_payload(self, base_url: str) -> JSON:
        url = self.url(base_url)
        payload: JSON = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": url,
            "proxy_url": url,
            "flags": 0,
        }
        if self.content_type is not None:
            payload["content_type"] = self.content_type
        if self.width is not None and self.height is not None:
            payload |= {"width": self.width, "height": self.height}
        if self.description is not None:
            payload["description"] = self.description
        if self.ephemeral:
            payload["ephemeral"] = True
        return payload


@dataclass(frozen=True)
class Revision:
    """A message as it was at one moment (the first revision is its creation)."""

    at: float
    content: str
    components: tuple[JSON, ...]
    embeds: tuple[JSON, ...]
    attachments: tuple[Attachment, ...]
    flags: int


@dataclass
class MessageRecord:
    """A message the bot posted (or a test injected), current state plus its edit history."""

    id: int
    channel_id: int
    guild_id: int | None
    author: FakeUser
    content: str = ""
    components: list[JSON] = field(default_factory=list)
    embeds: list[JSON] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    flags: int = 0
    interaction_id: int | None = None
    """The interaction whose callback or webhook created this message, if any."""
    webhook_token: str | None = None
    created_at: float = field(default_factory=time.monotonic)
    timestamp: str = field(default_factory=iso_now)
    edited_timestamp: str | None = None
    deleted: bool = False
    history: list[Revision] = field(default_factory=list, repr=False)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        """Still the "thinking…" placeholder of a deferred response."""
        return bool(self.flags & LOADING)

    def snapshot(self) -> None:
        """Append the current state to `history`."""
        self.history.append(
            Revision(
                at=time.monotonic(),
                content=self.content,
                components=tuple(self.components),
                embeds=tuple(self.embeds),
                attachments=tuple(self.attachments),
                flags=self.flags,
            )
        )

    def buttons(self) -> list[JSON]:
        """Every button (component type 2) in the message, in order."""
        found: list[JSON] = []
        stack = list(reversed(self.components))
        while stack:
            component = stack.pop()
            if component.get("type") == 2:
                found.append(component)
            stack.extend(reversed(component.get("components", [])))
        return found

    def button_labels(self) -> list[str]:
        return [str(b.get("label") or "") for b in self.buttons()]

    def custom_ids(self) -> list[str]:
        return [str(b["custom_id"]) for b in self.buttons() if "custom_id" in b]

    def attachment(self, filename: str | None = None) -> Attachment:
        """The attachment with this filename, or the only one."""
        if filename is None:
            if len(self.attachments) != 1:
                raise AssertionError(f"message {self.id} has {len(self.attachments)} attachments, not 1")
            return self.attachments[0]
        for attachment in self.attachments:
            if attachment.filename == filename:
                return attachment
        raise AssertionError(f"message {self.id} has no attachment {filename!r}")

    def to_payload(self, base_url: str) -> JSON:
        payload: JSON = {
            "id": str(self.id),
            "type": 0 if self.interaction_id is None else 20,
            "channel_id": str(self.channel_id),
            "author": self.author.to_payload(),
            "content": self.content,
            "timestamp": self.timestamp,
            "edited_timestamp": self.edited_timestamp,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [a.to_payload(base_url) for a in self.attachments],
            "embeds": list(self.embeds),
            "components": list(self.components),
            "pinned": False,
            "flags": self.flags,
        }
        if self.guild_id is not None:
            payload["guild_id"] = str(self.guild_id)
        if self.webhook_token is not None:
            payload["webhook_id"] = payload["application_id"] = str(self.author.id)
        return payload


@dataclass(frozen=True)
class CallbackRecord:
    """One `POST /interactions/{id}/{token}/callback` that was accepted."""

    type: int
    data: JSON
    at: float
    files: tuple[Attachment, ...] = ()


@dataclass
class InteractionRecord:
    """An interaction the fake dispatched, and how the bot answered it."""

    id: int
    token: str
    type: int
    data: JSON
    user: FakeUser
    guild_id: int | None
    channel_id: int
    payload: JSON = field(repr=False)
    dispatched_at: float
    state: FakeState = field(repr=False)
    message_id: int | None = None
    """For a component or modal interaction: the message it came from."""
    shard: tuple[int, int] = (0, 1)
    """`(shard_id, shard_count)` of the gateway session it was dispatched on."""
    callbacks: list[CallbackRecord] = field(default_factory=list)
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    token_expired: bool = False

    @property
    def acknowledged(self) -> bool:
        return bool(self.callbacks)

    @property
    def response_type(self) -> int | None:
        return self.callbacks[0].type if self.callbacks else None

    @property
    def ack_latency(self) -> float | None:
        """Seconds from dispatch to the first accepted callback."""
        return self.callbacks[0].at - self.dispatched_at if self.callbacks else None

    @property
    def modal(self) -> JSON | None:
        """The modal (`data` of a type-9 callback) the bot opened in answer, if any."""
        return next((c.data for c in self.callbacks if c.type == 9), None)

    @property
    def autocomplete_choices(self) -> list[JSON] | None:
        """Choices of a type-8 callback, if any."""
        found = next((c.data for c in self.callbacks if c.type == 8), None)
        return None if found is None else list(found.get("choices", []))

    async def response(self, timeout: float = 5.0) -> CallbackRecord:  # noqa: ASYNC109 - a bounded wait is this helper's API
        """Wait for the bot's first callback to this interaction."""
        await self.state.wait_for(lambda _: self.acknowledged, timeout=timeout, what=f"a callback to {self}")
        return self.callbacks[0]

    def original(self) -> MessageRecord | None:
        """The message `@original` refers to now, if any."""
        if self.original_message_id is None:
            return None
        return self.state.messages.get(self.original_message_id)

    async def wait_original(
        self,
        predicate: Callable[[MessageRecord], bool] = lambda m: not m.loading,
        timeout: float = 5.0,  # noqa: ASYNC109 - a bounded wait is this helper's API
    ) -> MessageRecord:
        """Wait until `@original` exists and satisfies `predicate` (default: no longer "thinking")."""

        def ready(_: FakeState) -> bool:
            message = self.original()
            return message is not None and predicate(message)

        await self.state.wait_for(ready, timeout=timeout, what=f"the original response of {self}")
        message = self.original()
        assert message is not None
        return message

    def followups(self) -> list[MessageRecord]:
        return [self.state.messages[i] for i in self.followup_ids]

    def __str__(self) -> str:
        name = self.data.get("name") or self.data.get("custom_id") or "?"
        return f"interaction {self.id} (type {self.type}, {name!r})"


@dataclass(frozen=True)
class Violation:
    """A request production Discord would reject, answered with its error and recorded here."""

    kind: str
    method: str
    path: str
    detail: str
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class RequestRecord:
    """One REST request the fake served."""

    method: str
    path: str
    status: int
    at: float
    """When it was answered (`time.monotonic()`)."""
    body: Any = None
    received_at: float | None = None
    """When its headers arrived, before its body was read: where an upload starts."""
    body_bytes: int = 0
    """The size of its body as sent (multipart framing included when known)."""


@dataclass(repr=False)
class FakeState:
    """Everything recorded; `notify()` after each change wakes `wait_for` callers."""

    messages: dict[int, MessageRecord] = field(default_factory=dict)
    interactions: dict[int, InteractionRecord] = field(default_factory=dict)
    global_commands: list[JSON] = field(default_factory=list)
    guild_commands: dict[int, list[JSON]] = field(default_factory=dict)
    command_syncs: list[tuple[int | None, float]] = field(default_factory=list)
    """(guild id or None for global, time) of every bulk command overwrite."""
    requests: list[RequestRecord] = field(default_factory=list)
    unknown_routes: list[RequestRecord] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    internal_errors: list[str] = field(default_factory=list)
    """Exceptions inside the fake itself (its bugs, or a request it cannot parse)."""
    heartbeats: list[float] = field(default_factory=list)
    identifies: list[JSON] = field(default_factory=list)
    """Every IDENTIFY payload received, refused ones included."""
    gateway_refusals: list[tuple[int, str]] = field(default_factory=list)
    """(close code, reason) of each refused IDENTIFY: 4010 Invalid shard, 4011 Sharding required."""
    member_requests: list[JSON] = field(default_factory=list)
    gateway_closed: int = 0
    _changed: asyncio.Event | None = None

    def notify(self) -> None:
        """Wake everyone waiting for a condition."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_for(
        self,
        predicate: Callable[[FakeState], bool],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - a bounded wait is this helper's API
        what: str = "",
    ) -> None:
        """Wait until `predicate(state)` holds; raise `WaitTimeout` naming `what` after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise WaitTimeout(
                    f"timed out after {timeout}s waiting for {what or predicate!r}; {self.summary()}"
                )
            if self._changed is None:
                self._changed = asyncio.Event()
            try:
                # Also poll, so conditions on things outside the fake (a bot's cache) work too.
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, POLL_S))
            except TimeoutError:
                continue

    def __repr__(self) -> str:
        return f"<FakeState: {self.summary()}>"

    def summary(self) -> str:
        """A one-line account of what happened, for failure messages."""
        parts = [f"{len(self.messages)} messages", f"{len(self.interactions)} interactions"]
        if self.violations:
            parts.append(f"violations: {[f'{v.kind}: {v.detail}' for v in self.violations]}")
        if self.unknown_routes:
            parts.append(f"unknown routes: {[f'{r.method} {r.path}' for r in self.unknown_routes]}")
        return ", ".join(parts)

    # --- queries -------------------------------------------------------------------------------------

    def messages_in(self, channel_id: int, *, include_deleted: bool = False) -> list[MessageRecord]:
        """Messages in a channel, oldest first."""
        return sorted(
            (
                m
                for m in self.messages.values()
                if m.channel_id == channel_id and (include_deleted or not m.deleted)
            ),
            key=lambda m: m.id,
        )

    def all_messages(self) -> list[MessageRecord]:
        return sorted((m for m in self.messages.values() if not m.deleted), key=lambda m: m.id)

    def max_heartbeat_gap(self) -> float:
        """Largest interval between two consecutive heartbeats (0 with fewer than two)."""
        beats = self.heartbeats
        return max((b - a for a, b in itertools.pairwise(beats)), default=0.0)

    def commands(self, guild_id: int | None = None) -> list[JSON]:
        """Commands as last synced, globally or to one guild."""
        return self.global_commands if guild_id is None else self.guild_commands.get(guild_id, [])
