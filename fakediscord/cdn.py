"""The fake's CDN: files users upload (slash-command attachment options) and files the bot posted,
served on the fake's own 127.0.0.1 port at `/attachments/{id}/{filename}`.

Links are signed as Discord's are (`?ex=&is=&hm=`, valid 24 hours): a link with its query stripped,
altered or expired answers 404, as cdn.discordapp.com does. A removed upload, or a file of a deleted
message, answers 404 too.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import mimetypes
import secrets
import struct
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from aiohttp import web

if TYPE_CHECKING:
    from fakediscord.state import Attachment, FakeState

__all__ = [
    "LINK_LIFETIME_S",
    "CdnRequest",
    "FakeCdn",
    "attachment_path",
    "guess_content_type",
    "image_size",
    "signed_url",
]

LINK_LIFETIME_S = 24 * 60 * 60
_SECRET = secrets.token_bytes(16)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def attachment_path(attachment_id: int, filename: str) -> str:
    """Where the CDN serves a file (the filename is part of the signed path, as on Discord)."""
    return f"/attachments/{attachment_id}/{quote(filename)}"


def _signature(path: str, expires: str, issued: str) -> str:
    return hmac.new(_SECRET, f"{unquote(path)}|{expires}|{issued}".encode(), hashlib.sha256).hexdigest()


def signed_url(base_url: str, path: str) -> str:
    """`base_url + path` with Discord's `ex` (expiry), `is` (issue time) and `hm` (signature) query."""
    issued = int(time.time())
    ex, is_ = f"{issued + LINK_LIFETIME_S:x}", f"{issued:x}"
    return f"{base_url}{path}?ex={ex}&is={is_}&hm={_signature(path, ex, is_)}&"


def _signature_ok(path: str, query: Mapping[str, str]) -> bool:
    ex, is_, hm = query.get("ex", ""), query.get("is", ""), query.get("hm", "")
    try:
        expired = int(ex, 16) < time.time()
    except ValueError:
        return False
    return not expired and hmac.compare_digest(hm, _signature(path, ex, is_))


def guess_content_type(filename: str) -> str | None:
    """The MIME type Discord would report for this filename, or None when it cannot tell."""
    return mimetypes.guess_type(filename)[0]


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) when the bytes are an image, as Discord measures attachments; else None."""
    # PNG by hand: Pillow refuses to open very large images (decompression bomb check), and a test of
    # the bot's pixel cap needs such an upload described truthfully.
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except Exception:
        return None


@dataclass(frozen=True)
class CdnRequest:
    """One GET on the CDN: the path asked for and the status answered."""

    path: str
    status: int
    at: float


class FakeCdn:
    """Uploaded files by id, plus the files of the bot's messages; `serve` is the aiohttp route."""

    def __init__(self, state: FakeState) -> None:
        self.state = state
        self.uploads: dict[int, Attachment] = {}
        self.removed: set[int] = set()
        self.requests: list[CdnRequest] = []

    def add(self, attachment: Attachment) -> Attachment:
        """Store a user's upload."""
        self.uploads[attachment.id] = attachment
        return attachment

    def remove(self, target: Attachment | str | int) -> None:
        """Delete a file (an attachment, its URL or its id): its links answer 404 from now on."""
        attachment_id = _attachment_id(target)
        if self.find(attachment_id) is None:
            raise KeyError(f"the fake CDN has no file {target!r}")
        self.removed.add(attachment_id)

    def find(self, attachment_id: int) -> Attachment | None:
        """The live file with this id: an upload, or an attachment of a message not deleted."""
        if attachment_id in self.removed:
            return None
        if attachment_id in self.uploads:
            return self.uploads[attachment_id]
        for message in self.state.messages.values():
            for attachment in message.attachments:
                if attachment.id == attachment_id:
                    return None if message.deleted else attachment
        return None

    async def serve(self, request: web.Request) -> web.Response:
        response = self._answer(request)
        self.requests.append(CdnRequest(request.path, response.status, time.monotonic()))
        self.state.notify()
        return response

    def _answer(self, request: web.Request) -> web.Response:
        attachment_id = int(request.match_info["aid"])
        attachment = self.find(attachment_id)
        if not _signature_ok(request.rel_url.raw_path, request.query) or attachment is None:
            return web.Response(status=404, text="This content is no longer available.")
        content_type = attachment.content_type or "application/octet-stream"
        return web.Response(body=attachment.data, headers={"Content-Type": content_type})


def _attachment_id(target: Attachment | str | int) -> int:
    if isinstance(target, int):
        return target
    if isinstance(target, str):
        parts = urlsplit(target).path.split("/")
        if len(parts) >= 4 and parts[-3] == "attachments" and parts[-2].isdigit():
            return int(parts[-2])
        raise ValueError(f"{target!r} is not a fake CDN link (…/attachments/<id>/<filename>)")
    return target.id
