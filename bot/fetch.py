"""Fetching a member's image (an attachment or a link in a prompt) without letting the link reach inside.

A link is the member's choice, so the bot treats it as hostile: only http(s); every address the name resolves
to must be public, and the connection goes to exactly those addresses (a second lookup is what DNS rebinding
exploits); redirects are followed by hand and checked the same way; the size, the time and the pixel count are
capped; Pillow, not the Content-Type, decides what the bytes are, and only common web formats are opened.
Every refusal is a `FetchError` whose message is one sentence the member can act on.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import ParamSpec, Self, TypeVar

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from PIL import Image, ImageOps
from yarl import URL

from bot.config import Config
from bot.errors import BotError

__all__ = [
    "MIN_SIDE",
    "FetchError",
    "FetchedImage",
    "ImageFetcher",
    "decode_image",
    "is_public_address",
    "off_loop",
]

P = ParamSpec("P")
T = TypeVar("T")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str, int], Awaitable[list[str]]]

MIN_SIDE = 16
"""Fewer pixels than this on a side leave nothing to start from (tracking pixels, icons)."""

_USER_AGENT = "imaginebot (a Discord bot fetching an image a member gave it)"
# Pillow also opens EPS (through Ghostscript), PSD, TIFF and dozens of rarer formats: more parser for an
# attacker to aim at, and nothing a member posts on Discord.
_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP")
_FORMAT_NAMES = "PNG, JPEG, GIF, WebP or BMP"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAME_LENGTH = 60


_PICTURE_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imaginebot-pictures")


async def off_loop(work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run Pillow work on members' pictures (decode, keep, fit) on one thread of its own, in turn.

    Off the event loop, and one at a time: twenty pictures decoded on the default pool's threads at
    once kept taking the GIL from the loop (ticks 25 ms late, bench/image_prompts.py); one thread
    takes as long in all, since two cores are busy either way.
    """
    return await asyncio.get_running_loop().run_in_executor(
        _PICTURE_THREAD, functools.partial(work, *args, **kwargs)
    )


class FetchError(BotError):
    """An image could not be used; the message is one sentence for the member, naming the link."""


@dataclass(frozen=True, slots=True)
class FetchedImage:
    """A member's image, as given, as downloaded and as decoded."""

    url: str
    """The URL the member gave."""
    data: bytes
    """The file as downloaded."""
    sha256: str
    """Hex SHA-256 of `data`."""
    image: Image.Image
    """Decoded: upright by its EXIF orientation, the first frame of an animation, RGB, fully loaded."""


# --- addresses ------------------------------------------------------------------------------------

# A table from the IANA special-purpose registries rather than `ipaddress.is_global`, whose answers changed
# between Python releases and which calls multicast global.
_NOT_PUBLIC_V4 = tuple(
    ipaddress.IPv4Network(network)
    for network in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host on Linux
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, where cloud metadata services answer
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
    )
)
# Global unicast is allocated from 2000::/3 only: outside it lie loopback, unspecified, IPv4-compatible,
# unique-local, link-local, site-local, multicast and the unallocated rest.
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_NOT_PUBLIC_V6 = tuple(
    ipaddress.IPv6Network(network)
    for network in (
        "2001::/23",  # IETF protocol assignments: Teredo, benchmarking, ORCHID
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 or 6to4 address reaches, which decides whether it is public."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return address.sixtofour


def is_public_address(address: IPAddress) -> bool:
    """Whether the address is on the public internet; an address that embeds an IPv4 one is judged by it."""
    if isinstance(address, ipaddress.IPv4Address):
        return not any(address in network for network in _NOT_PUBLIC_V4)
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return is_public_address(embedded)
    return address in _GLOBAL_UNICAST_V6 and not any(address in network for network in _NOT_PUBLIC_V6)


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class _Pin:
    host: str
    addresses: tuple[IPAddress, ...]


# The addresses checked for the request this task is making; read by `_PinnedResolver` when aiohttp connects.
_pin: ContextVar[_Pin | None] = ContextVar("imaginebot_fetch_pin", default=None)


class _PinnedResolver(AbstractResolver):
    """Answers aiohttp with the addresses already checked for this request, never asking DNS a second time.

    A kept-alive connection that aiohttp reuses instead was made to an address checked, earlier, for the
    same host and port.
    """

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        pin = _pin.get()
        if pin is None or pin.host != host:
            raise OSError(f"{host} was not checked before connecting")
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for address in pin.addresses
        ]

    async def close(self) -> None:
        """Nothing to release: no lookups of its own."""


# --- decoding -------------------------------------------------------------------------------------


def decode_image(data: bytes, *, max_pixels: int, name: str) -> Image.Image:
    """Decode a member's image to RGB, refusing what is not one, is damaged, too large or too small.

    The pixel count is checked from the header, before any pixel is decoded. Pillow's own bomb limit
    (`Image.MAX_IMAGE_PIXELS`) still applies on top; its warning or error becomes the same refusal.
    """
    try:
        opened = Image.open(io.BytesIO(data), formats=_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own limit came first; the image is over it (the warning) or twice over (the error).
        limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
        raise FetchError(_too_many_pixels(name, limit)) from None
    except Exception:  # Pillow's plugins raise many types on bad input: UnidentifiedImageError, SyntaxError…
        raise FetchError(f"`{name}` is not a {_FORMAT_NAMES} image I can read.") from None
    with opened:
        width, height = opened.size
        if width * height > max_pixels:
            raise FetchError(_too_many_pixels(name, max_pixels, f"{width}x{height}"))
        if min(width, height) < MIN_SIDE:
            raise FetchError(
                f"`{name}` is only {width}x{height} pixels, too small to start from; "
                f"give one at least {MIN_SIDE} pixels on each side."
            )
        try:
            opened.load()  # the first frame of an animation
            return _flatten_to_rgb(ImageOps.exif_transpose(opened))
        except Exception:
            raise FetchError(
                f"`{name}` is damaged or cut short; save it again, or give another image."
            ) from None


def _too_many_pixels(name: str, limit: int, size: str = "") -> str:
    has = f"is {size} pixels" if size else "has too many pixels"
    return f"`{name}` {has}, more than the {limit / 1e6:.3g} megapixels I take; give a smaller image."


def _flatten_to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency laid over white: transparent pixels often hold arbitrary colour."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")


# --- fetching -------------------------------------------------------------------------------------


def _display_name(url: str) -> str:
    """The link on one short line: without the query (Discord's CDN signs links with a long one)."""
    text = url.strip().split("#", 1)[0].split("?", 1)[0].replace("`", "'") or "(an empty link)"
    if len(text) > _NAME_LENGTH:
        half = _NAME_LENGTH // 2
        text = f"{text[:half]}…{text[-(half - 1) :]}"
    return text


def _check_status(status: int, name: str) -> None:
    if not 200 <= status < 300:
        # The standard phrase, not the server's: a reason line is the server's to fill with anything.
        try:
            answer = f"{status} {HTTPStatus(status).phrase}"
        except ValueError:
            answer = str(status)
        raise FetchError(
            f"The server of `{name}` answered {answer} instead of an image; check that the link still works."
        )


def _follow(url: URL, location: str | None, name: str) -> URL:
    """Where a redirect leads, relative to the URL that answered it."""
    try:
        if location:
            return url.join(URL(location))
    except (ValueError, TypeError):
        pass
    raise FetchError(f"`{name}` redirects to a broken link; give the link to the image itself.")


class ImageFetcher:
    """Downloads members' images over one HTTP session; see the module docstring for what it refuses."""

    def __init__(
        self,
        *,
        max_bytes: int,
        max_pixels: int,
        timeout_s: float,
        connect_timeout_s: float,
        allow_hosts: frozenset[str] = frozenset(),
        max_redirects: int = 3,
        resolve: Resolve | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`allow_hosts` holds `host` (any port) or `host:port` entries let through the public-address check.

        `resolve(host, port)` returns the host's addresses (default: the system's getaddrinfo); `ssl_context`
        replaces the system's trusted certificates (a private CA). Both exist for tests and private set-ups.
        """
        self._max_bytes = max_bytes
        self._max_pixels = max_pixels
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._allow_hosts = frozenset(entry.strip().lower() for entry in allow_hosts)
        self._max_redirects = max_redirects
        self._resolve = resolve or _getaddrinfo
        self._ssl_context = ssl_context
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_config(cls, config: Config) -> ImageFetcher:
        return cls(
            max_bytes=config.max_image_bytes,
            max_pixels=config.max_image_pixels,
            timeout_s=config.fetch_timeout_s,
            connect_timeout_s=config.fetch_connect_timeout_s,
            allow_hosts=config.fetch_allowed,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch_all(self, urls: Sequence[str]) -> list[FetchedImage]:
        """Fetch all at once; the first refusal is raised and the other downloads are cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self.fetch(url)) for url in urls]
        except* FetchError as failed:
            raise failed.exceptions[0] from None
        return [task.result() for task in tasks]

    async def fetch(self, url: str) -> FetchedImage:
        """Download and decode one image, or raise `FetchError` saying why not."""
        name = _display_name(url)
        try:
            async with asyncio.timeout(self._timeout_s):
                data = await self._download(url, name)
        except TimeoutError:  # the total limit, or aiohttp's connect limit
            raise FetchError(
                f"`{name}` took too long to download (the limit is {self._timeout_s:g} s); "
                "try again, or attach the image instead."
            ) from None
        except aiohttp.ClientConnectorCertificateError:
            raise FetchError(f"`{name}` has no valid HTTPS certificate, so I won't fetch it.") from None
        except aiohttp.ClientError:
            raise FetchError(
                f"I couldn't download `{name}`: the connection failed; try again, or attach the image."
            ) from None
        # Decoding a large image takes long enough to stall every other member's command.
        return await off_loop(self._finish, url, data, name)

    def _finish(self, url: str, data: bytes, name: str) -> FetchedImage:
        image = decode_image(data, max_pixels=self._max_pixels, name=name)
        return FetchedImage(url=url, data=data, sha256=hashlib.sha256(data).hexdigest(), image=image)

    async def _download(self, given: str, name: str) -> bytes:
        """Follow the link, and its redirects one hop at a time, each checked before it is connected to."""
        try:
            url = URL(given.strip())
        except (ValueError, TypeError):
            raise FetchError(f"`{name}` is not a link I can read; check it for typos.") from None
        session = self._get_session()
        for hop in range(self._max_redirects + 1):
            token = _pin.set(await self._admit(url, name, redirected=hop > 0))
            try:
                async with session.get(url, allow_redirects=False) as response:
                    if response.status not in _REDIRECTS:
                        _check_status(response.status, name)
                        return await self._read_body(response, name)
                    url = _follow(url, response.headers.get("Location"), name)
            finally:
                _pin.reset(token)
        raise FetchError(
            f"`{name}` redirects more than {self._max_redirects} times; give the link to the image itself."
        )

    async def _admit(self, url: URL, name: str, *, redirected: bool) -> _Pin:
        """The addresses this hop may connect to, or a refusal: not http(s), unknown host, private address."""
        host, port = url.raw_host, url.port
        if url.scheme not in ("http", "https") or not host or port is None:
            if redirected:
                raise FetchError(f"`{name}` redirects away from the web; give the link to the image itself.")
            raise FetchError(
                f"`{name}` is not a web link; give an http(s) link to an image, or attach the file."
            )
        try:
            addresses: tuple[IPAddress, ...] = (ipaddress.ip_address(host),)
        except ValueError:
            addresses = await self._lookup(host, port, name)
        if not (self._is_allowed(host, port) or all(map(is_public_address, addresses))):
            raise FetchError(
                f"`{name}` {'redirects' if redirected else 'points'} to a private or local address, "
                "so I won't fetch it; use a public link, or attach the image."
            )
        return _Pin(host, addresses)

    async def _lookup(self, host: str, port: int, name: str) -> tuple[IPAddress, ...]:
        try:
            answers = await self._resolve(host, port)
        except OSError:
            answers = []
        if not answers:
            raise FetchError(f"I can't find the server `{host}` of `{name}`; check the link.")
        return tuple(ipaddress.ip_address(answer) for answer in answers)

    def _is_allowed(self, host: str, port: int) -> bool:
        host = host.rstrip(".")
        bracketed = f"[{host}]" if ":" in host else host
        return not self._allow_hosts.isdisjoint({host, bracketed, f"{bracketed}:{port}", f"{host}:{port}"})

    async def _read_body(self, response: aiohttp.ClientResponse, name: str) -> bytes:
        """The body, cut off as soon as it passes the cap, whatever Content-Length claimed."""
        too_big = FetchError(
            f"`{name}` is larger than the {self._max_bytes / 2**20:.3g} MB I take; give a smaller image."
        )
        if response.content_length is not None and response.content_length > self._max_bytes:
            raise too_big
        body = bytearray()
        async for chunk in response.content.iter_any():
            body += chunk
            if len(body) > self._max_bytes:
                raise too_big
        return bytes(body)

    def _get_session(self) -> aiohttp.ClientSession:
        """The session, made on first use so that it belongs to the running loop."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    resolver=_PinnedResolver(),
                    use_dns_cache=False,  # a cached answer would skip the pin
                    force_close=True,  # a kept-alive connection would go where an earlier hop's check sent it
                    ssl=self._ssl_context or True,
                ),
                timeout=aiohttp.ClientTimeout(total=None, connect=self._connect_timeout_s),
                # The file as the server has it: a compressed body could inflate past the byte cap unseen.
                auto_decompress=False,
                headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"},
                cookie_jar=aiohttp.DummyCookieJar(),  # one member's cookies never ride along with another's
                trust_env=False,  # a proxy would do its own lookup, past the check
            )
        return self._session
