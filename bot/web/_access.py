"""Who is looking: signed `/gallery` links, the sessions they open, and what each viewer may see.

There are no passwords. `/gallery` in Discord hands a member a link carrying a pass (server, member,
name, whether they manage the server, expiry) signed with HMAC-SHA256; opening it within its time
turns it into a session cookie for that server, signed the same way with another purpose, so neither
can stand in for the other. The secret is `IMAGINE_WEB_SECRET`, or one generated once into the data
dir (readable by the bot's user only).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from bot.config import Config
from bot.policy import GalleryAccess

__all__ = ["SESSION_TTL_S", "AccessDenied", "GalleryKeys", "Pass", "may_see", "may_see_server"]

SESSION_TTL_S: Final = 24 * 3600.0
"""How long a session opened by a link lasts; then the member asks for a new link."""

_SECRET_FILE = "web-secret"
_LINK, _SESSION = "link", "session"


class AccessDenied(Exception):
    """A link or session cookie is not valid; the message says why (for the log, not the visitor)."""


@dataclass(frozen=True, slots=True)
class Pass:
    """A member of one server, as `/gallery` vouched for them."""

    guild_id: int
    user_id: int
    name: str
    admin: bool
    """They had Manage Server when they asked: the admin page is theirs."""
    expires: float
    """Unix time after which it is refused."""


class GalleryKeys:
    """Signs and checks passes with the gallery's secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the gallery's secret must be at least 16 bytes")
        self._secret = secret

    @classmethod
    def load(cls, config: Config) -> GalleryKeys:
        """`IMAGINE_WEB_SECRET`, or the data dir's secret file (created on first use)."""
        if config.web_secret is not None:
            return cls(config.web_secret.get_secret_value().encode())
        return cls(_secret_file(config.data_dir / _SECRET_FILE))

    def link_token(
        self, *, guild_id: int, user_id: int, name: str, admin: bool, now: float, ttl_s: float
    ) -> str:
        """What a `/gallery` link carries: valid for `ttl_s` seconds from `now`."""
        return self._sign(_LINK, Pass(guild_id, user_id, name, admin, now + ttl_s))

    def open_link(self, token: str, *, now: float) -> tuple[Pass, str]:
        """The pass of a link, and the session cookie it opens (valid `SESSION_TTL_S`)."""
        link = self._check(_LINK, token, now)
        session = Pass(link.guild_id, link.user_id, link.name, link.admin, now + SESSION_TTL_S)
        return session, self._sign(_SESSION, session)

    def open_session(self, cookie: str, *, guild_id: int, now: float) -> Pass:
        """The pass of a session cookie, for that server only."""
        session = self._check(_SESSION, cookie, now)
        if session.guild_id != guild_id:
            raise AccessDenied(f"a session of server {session.guild_id} used for server {guild_id}")
        return session

    def _sign(self, purpose: str, what: Pass) -> str:
        body = _b64(json.dumps(asdict(what), separators=(",", ":")).encode())
        return f"{body}.{_b64(self._mac(purpose, body))}"

    def _mac(self, purpose: str, body: str) -> bytes:
        return hmac.new(self._secret, f"{purpose}.{body}".encode(), hashlib.sha256).digest()

    def _check(self, purpose: str, token: str, now: float) -> Pass:
        body, _, mac = token.partition(".")
        try:
            given = _unb64(mac)
            fields = json.loads(_unb64(body))
        except (binascii.Error, ValueError) as exc:
            raise AccessDenied(f"a malformed {purpose}") from exc
        if not hmac.compare_digest(given, self._mac(purpose, body)):
            raise AccessDenied(f"a {purpose} with a bad signature")
        try:
            what = Pass(
                guild_id=int(fields["guild_id"]),
                user_id=int(fields["user_id"]),
                name=str(fields["name"]),
                admin=bool(fields["admin"]),
                expires=float(fields["expires"]),
            )
        except (KeyError, TypeError, ValueError) as exc:  # signed by us, so only an old format
            raise AccessDenied(f"a {purpose} in an unknown format") from exc
        if what.expires < now:
            raise AccessDenied(f"an expired {purpose} of member {what.user_id}")
        return what


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _secret_file(path: Path) -> bytes:
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    secret = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL: two processes starting at once keep the first one's secret
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as file:
        file.write(secret.hex())
    return secret


def may_see_server(viewer: Pass | None, access: GalleryAccess) -> bool:
    """Whether `viewer` (None: not signed in) sees every member's jobs in the server's gallery."""
    if access is GalleryAccess.PUBLIC:
        return True
    return access is GalleryAccess.MEMBERS and viewer is not None


def may_see(viewer: Pass | None, owner_id: int, access: GalleryAccess) -> bool:
    """Whether `viewer` may see a job of member `owner_id` in the server whose gallery rule is `access`
    (the caller has already made sure the job belongs to that server and may be shown at all)."""
    if viewer is not None and viewer.user_id == owner_id:
        return True
    return may_see_server(viewer, access)
