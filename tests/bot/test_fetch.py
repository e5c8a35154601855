"""Fetching a member's image: what is refused and why, in one sentence, and what comes back when it works.

The images come from a real aiohttp server on 127.0.0.1, let through with the allow-list; names are made to
resolve where a test needs them by the fetcher's `resolve` hook, so no test touches real DNS.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import ipaddress
import random
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import warnings
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from bot.config import load_config
from bot.fetch import MIN_SIDE, FetchError, ImageFetcher, decode_image, is_public_address

MiB = 1024 * 1024


def encode(image: Image.Image, kind: str = "PNG", **params: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **params)
    return out.getvalue()


def noise(width: int, height: int) -> Image.Image:
    """An image that does not compress, so its file is big and a cut in it lands in pixel data."""
    return Image.frombytes("RGB", (width, height), random.Random(0).randbytes(width * height * 3))


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims the given size in a hand-made IHDR (valid CRC) and holds almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


PNG = encode(Image.new("RGB", (64, 48), (200, 30, 40)))
MP4 = (  # the start of an MP4: an ftyp box, then the movie's box
    struct.pack(">I", 24)
    + b"ftypisom"
    + struct.pack(">I", 0x200)
    + b"isomiso2"
    + struct.pack(">I", 8)
    + b"moov"
)


# --- the image server ------------------------------------------------------------------------------


@dataclass
class Served:
    """The local image server: files to serve, and what it saw."""

    port: int = 0
    files: dict[str, bytes] = field(default_factory=lambda: {"png": PNG})
    hosts: list[str] = field(default_factory=list)
    """The Host header of each request, in order."""
    agents: list[str] = field(default_factory=list)
    sent: int = 0
    """Bytes the last streaming handler wrote before it finished or was cut off."""
    streamed: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


def _app(served: Served) -> web.Application:
    async def file(request: web.Request) -> web.Response:
        return web.Response(body=served.files[request.match_info["name"]], content_type="image/png")

    async def redirect(request: web.Request) -> web.Response:
        hops = int(request.match_info["hops"])
        if hops == 0:
            return web.Response(body=PNG, content_type="image/png")
        raise web.HTTPFound(f"/redirect/{hops - 1}")

    async def to(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["location"])

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="nothing here")

    async def stream(request: web.Request) -> web.StreamResponse:
        """`size` bytes in `chunk`-byte writes `pause` seconds apart; `claim` is a Content-Length to send."""
        chunk, pause = int(request.query["chunk"]), float(request.query["pause"])
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        if "claim" in request.query:
            response.content_length = int(request.query["claim"])
        served.sent = 0
        try:  # the test server cancels a handler whose client has gone
            await response.prepare(request)
            while served.sent < int(request.query["size"]):
                await response.write(b"\x89" * chunk)
                served.sent += chunk
                await asyncio.sleep(pause)
            await response.write_eof()
        finally:
            served.streamed.set()
        return response

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        served.hosts.append(request.host)
        served.agents.append(request.headers.get("User-Agent", ""))
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application(middlewares=[record])
    app.router.add_get("/file/{name}", file)
    app.router.add_get("/redirect/{hops}", redirect)
    app.router.add_get("/to", to)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/stream", stream)
    return app


@asynccontextmanager
async def serving(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Served]:
    served = Served()
    server = TestServer(_app(served), host="127.0.0.1")
    await server.start_server(ssl=ssl_context)
    assert server.port is not None
    served.port = server.port
    try:
        yield served
    finally:
        await server.close()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with serving() as served:
        yield served


MakeFetcher = Callable[..., ImageFetcher]


@pytest.fixture
async def make_fetcher(served: Served) -> AsyncIterator[MakeFetcher]:
    """Fetchers with small limits that let the local server through; each is closed afterwards."""
    fetchers: list[ImageFetcher] = []

    def make(**options: Any) -> ImageFetcher:
        settings: dict[str, Any] = {
            "max_bytes": MiB,
            "max_pixels": 4_000_000,
            "timeout_s": 2.0,
            "connect_timeout_s": 1.0,
            "allow_hosts": frozenset({f"127.0.0.1:{served.port}"}),
        }
        fetchers.append(ImageFetcher(**(settings | options)))
        return fetchers[-1]

    yield make
    for fetcher in fetchers:
        await fetcher.close()


@dataclass
class FakeDNS:
    """Answers lookups from a table and remembers each one, as the fetcher's `resolve` hook."""

    table: dict[str, list[str]]
    calls: list[tuple[str, int]] = field(default_factory=list)

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


async def refusal(fetch: Awaitable[object]) -> str:
    with pytest.raises(FetchError) as caught:
        await fetch
    message = str(caught.value)
    assert message.endswith("."), message
    assert ". " not in message, f"not one sentence: {message!r}"
    return message


# --- happy paths -----------------------------------------------------------------------------------


async def test_a_png_arrives_decoded_with_its_hash(served: Served, make_fetcher: MakeFetcher) -> None:
    url = served.url("/file/png")
    fetched = await make_fetcher().fetch(url)
    assert fetched.url == url
    assert fetched.data == PNG
    assert fetched.sha256 == hashlib.sha256(PNG).hexdigest()
    assert fetched.image.mode == "RGB"
    assert fetched.image.size == (64, 48)
    assert fetched.image.getpixel((0, 0)) == (200, 30, 40)
    assert served.agents[0].startswith("imaginebot ")


async def test_a_jpeg_is_turned_upright_by_its_exif_orientation(
    served: Served, make_fetcher: MakeFetcher
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    served.files["photo.jpg"] = encode(Image.new("RGB", (80, 40), "green"), "JPEG", exif=exif.tobytes())
    fetched = await make_fetcher().fetch(served.url("/file/photo.jpg"))
    assert fetched.image.size == (40, 80)
    assert fetched.image.mode == "RGB"


async def test_an_animation_gives_its_first_frame(served: Served, make_fetcher: MakeFetcher) -> None:
    red, blue = Image.new("RGB", (32, 32), (255, 0, 0)), Image.new("RGB", (32, 32), (0, 0, 255))
    served.files["anim.gif"] = encode(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    fetched = await make_fetcher().fetch(served.url("/file/anim.gif"))
    assert fetched.image.mode == "RGB"
    assert fetched.image.getpixel((5, 5)) == (255, 0, 0)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (Image.new("RGBA", (20, 20), (10, 20, 30, 255)), (10, 20, 30)),
        (Image.new("RGBA", (20, 20), (10, 20, 30, 0)), (255, 255, 255)),  # transparent: laid over white
        (Image.new("L", (20, 20), 77), (77, 77, 77)),
        (Image.new("LA", (20, 20), (77, 255)), (77, 77, 77)),
        (Image.new("RGB", (20, 20), (0, 51, 102)).convert("P"), (0, 51, 102)),
    ],
    ids=["RGBA", "RGBA-transparent", "L", "LA", "P"],
)
def test_every_mode_becomes_rgb(image: Image.Image, expected: tuple[int, int, int]) -> None:
    decoded = decode_image(encode(image), max_pixels=10_000, name="x.png")
    assert decoded.mode == "RGB"
    assert decoded.getpixel((3, 3)) == expected


def test_a_palette_with_a_transparent_colour_is_laid_over_white() -> None:
    image = Image.new("P", (20, 20), 1)
    image.putpalette([0, 0, 0, 9, 9, 9])
    decoded = decode_image(encode(image, transparency=1), max_pixels=10_000, name="x.png")
    assert decoded.getpixel((0, 0)) == (255, 255, 255)


async def test_twenty_at_once_are_decoded_off_the_event_loop(
    served: Served, make_fetcher: MakeFetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # How long the loop then waits is measured by bench/image_prompts.py, not here.
    import bot.fetch

    threads: list[int] = []
    real_decode = bot.fetch.decode_image

    def decode(data: bytes, *, max_pixels: int, name: str) -> Image.Image:
        threads.append(threading.get_ident())
        return real_decode(data, max_pixels=max_pixels, name=name)

    monkeypatch.setattr(bot.fetch, "decode_image", decode)
    served.files["big.jpg"] = encode(Image.radial_gradient("L").resize((500, 500)).convert("RGB"), "JPEG")
    urls = [served.url("/file/big.jpg") + f"?n={n}" for n in range(20)]
    fetched = await make_fetcher(max_bytes=16 * MiB).fetch_all(urls)
    assert [f.url for f in fetched] == urls
    assert all(f.image.size == (500, 500) for f in fetched)
    assert len(threads) == 20
    assert threading.get_ident() not in threads


async def test_from_config_wires_the_settings(served: Served) -> None:
    config = load_config(fetch_allow_hosts=f" 127.0.0.1:{served.port} , other.test", max_image_mb=0.01)
    async with ImageFetcher.from_config(config) as fetcher:
        served.files["noise.png"] = encode(noise(64, 64))
        message = await refusal(fetcher.fetch(served.url("/file/noise.png")))
        assert "larger than the 0.01 MB" in message  # allowed through, then capped by size
        await fetcher.fetch(served.url("/file/png"))


# --- what the bytes are ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [b"<!doctype html><title>Cat</title>", MP4, b""], ids=["html", "video", "empty"]
)
async def test_what_is_not_an_image_is_refused(
    served: Served, make_fetcher: MakeFetcher, body: bytes
) -> None:
    served.files["cat.png"] = body  # served as image/png: the bytes decide, not the Content-Type
    message = await refusal(make_fetcher().fetch(served.url("/file/cat.png")))
    assert (
        message == f"`{served.url('/file/cat.png')}` is not a PNG, JPEG, GIF, WebP or BMP image I can read."
    )


async def test_a_truncated_png_is_refused(served: Served, make_fetcher: MakeFetcher) -> None:
    whole = encode(noise(100, 100))
    served.files["cut.png"] = whole[: len(whole) * 2 // 3]
    message = await refusal(make_fetcher().fetch(served.url("/file/cut.png")))
    assert "is damaged or cut short" in message


@pytest.mark.parametrize("size", [(1, 1), (MIN_SIDE - 1, 200), (200, MIN_SIDE - 1)])
async def test_a_tiny_image_is_refused(
    served: Served, make_fetcher: MakeFetcher, size: tuple[int, int]
) -> None:
    served.files["dot.png"] = encode(Image.new("RGB", size))
    message = await refusal(make_fetcher().fetch(served.url("/file/dot.png")))
    assert f"is only {size[0]}x{size[1]} pixels, too small to start from" in message
    assert f"at least {MIN_SIDE} pixels on each side" in message


PILLOW_LIMIT = Image.MAX_IMAGE_PIXELS or 0


@pytest.mark.parametrize(
    ("width", "height", "max_pixels", "said"),
    [
        # Over twice Pillow's own limit: its error. 900 million pixels would take 2.7 GB.
        (30_000, 30_000, 40_000_000, f"has too many pixels, more than the {40:.3g}"),
        # Over Pillow's limit, under ours: its warning, as an error, and its limit is named.
        (10_000, 10_000, 200_000_000, f"has too many pixels, more than the {PILLOW_LIMIT / 1e6:.3g}"),
        (3_000, 3_000, 4_000_000, f"is 3000x3000 pixels, more than the {4:.3g}"),  # over ours only
    ],
)
def test_a_pixel_bomb_is_refused_from_its_header(width: int, height: int, max_pixels: int, said: str) -> None:
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # as pytest has it; not everyone does
        with pytest.raises(FetchError) as caught:
            decode_image(png_header(width, height), max_pixels=max_pixels, name="bomb.png")
    assert time.perf_counter() - started < 0.5  # refused from the header, nothing allocated
    assert str(caught.value) == f"`bomb.png` {said} megapixels I take; give a smaller image."


@pytest.mark.parametrize(
    ("kind", "accepted"),
    [("WEBP", True), ("BMP", True), ("TIFF", False), ("ICO", False), ("PPM", False), ("TGA", False)],
)
def test_only_web_formats_are_opened(kind: str, accepted: bool) -> None:
    # Pillow opens dozens of formats; each is parser code a stranger's file could aim at.
    data = encode(Image.new("RGB", (32, 32), (0, 128, 255)), kind)
    if accepted:
        assert decode_image(data, max_pixels=10_000, name="x").size == (32, 32)
    else:
        with pytest.raises(FetchError, match="is not a PNG, JPEG, GIF, WebP or BMP image I can read"):
            decode_image(data, max_pixels=10_000, name="x")


# --- size and time ---------------------------------------------------------------------------------


async def test_a_body_over_the_cap_is_cut_off_while_streaming(
    served: Served, make_fetcher: MakeFetcher
) -> None:
    size = 64 * MiB  # no Content-Length: only counting the bytes can stop it
    url = served.url(f"/stream?size={size}&chunk={64 * 1024}&pause=0")
    message = await refusal(make_fetcher(max_bytes=256 * 1024).fetch(url))
    assert message == f"`{url.split('?')[0]}` is larger than the 0.25 MB I take; give a smaller image."
    await asyncio.wait_for(served.streamed.wait(), 5)
    assert served.sent < size // 4  # the server was cut off, not read to the end


async def test_a_content_length_over_the_cap_is_refused_before_reading(
    served: Served, make_fetcher: MakeFetcher
) -> None:
    url = served.url(f"/stream?size={100 * MiB}&chunk=1&pause=0.05&claim={100 * MiB}")
    started = time.perf_counter()
    message = await refusal(make_fetcher(timeout_s=5).fetch(url))
    assert time.perf_counter() - started < 1
    assert "is larger than the 1 MB I take" in message


async def test_a_trickling_server_is_cut_at_the_total_timeout(
    served: Served, make_fetcher: MakeFetcher
) -> None:
    url = served.url("/stream?size=100000&chunk=1&pause=0.02")
    started = time.perf_counter()
    message = await refusal(make_fetcher(timeout_s=0.4).fetch(url))
    assert 0.35 < time.perf_counter() - started < 1.5
    assert message == (
        f"`{url.split('?')[0]}` took too long to download (the limit is 0.4 s); "
        "try again, or attach the image instead."
    )


async def test_a_server_that_never_accepts_is_cut_at_the_connect_timeout() -> None:
    # A listener that never accepts, with its backlog of one taken, leaves the next connection unanswered.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            async with ImageFetcher(
                max_bytes=MiB,
                max_pixels=4_000_000,
                timeout_s=3,
                connect_timeout_s=0.2,
                allow_hosts=frozenset({f"127.0.0.1:{port}"}),
            ) as fetcher:
                started = time.perf_counter()
                message = await refusal(fetcher.fetch(f"http://127.0.0.1:{port}/x.png"))
                elapsed = time.perf_counter() - started
    assert "took too long" in message
    assert elapsed < 2


async def test_fetch_all_raises_the_first_refusal_and_cancels_the_rest(
    served: Served, make_fetcher: MakeFetcher
) -> None:
    slow = served.url("/stream?size=100000&chunk=1&pause=0.02")
    started = time.perf_counter()
    message = await refusal(
        make_fetcher().fetch_all([served.url("/file/png"), served.url("/status/404"), slow])
    )
    assert "answered 404 Not Found" in message
    assert time.perf_counter() - started < 1  # the slow one was not waited for
    await asyncio.wait_for(served.streamed.wait(), 2)  # and its connection was closed


async def test_a_status_other_than_2xx_is_named(served: Served, make_fetcher: MakeFetcher) -> None:
    message = await refusal(make_fetcher().fetch(served.url("/status/404")))
    assert message == (
        f"The server of `{served.url('/status/404')}` answered 404 Not Found instead of an image; "
        "check that the link still works."
    )


# --- where a link may lead -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/cat.png",
        "data:image/png;base64,iVBORw0KGgo=",
        "gopher://x/1",
        "",
    ],
)
async def test_links_that_are_not_http_are_refused_before_any_lookup(
    make_fetcher: MakeFetcher, url: str
) -> None:
    dns = FakeDNS({})
    message = await refusal(make_fetcher(resolve=dns).fetch(url))
    assert "is not a web link; give an http(s) link to an image, or attach the file" in message
    assert dns.calls == []


@pytest.mark.parametrize(
    "answers",
    [["10.0.0.1"], ["169.254.169.254"], ["::ffff:127.0.0.1"], ["93.184.216.34", "10.0.0.1"], ["fd00::1"]],
)
async def test_a_name_that_resolves_to_a_private_address_is_refused(
    served: Served, make_fetcher: MakeFetcher, answers: list[str]
) -> None:
    dns = FakeDNS({"evil.test": answers})
    message = await refusal(make_fetcher(resolve=dns).fetch("http://evil.test/cat.png"))
    assert message == (
        "`http://evil.test/cat.png` points to a private or local address, so I won't fetch it; "
        "use a public link, or attach the image."
    )
    assert dns.calls == [("evil.test", 80)]


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/x.png",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/x.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0:8080/",
        "http://[64:ff9b::a00:1]/",
    ],
)
async def test_a_literal_private_address_is_refused_without_a_lookup(
    make_fetcher: MakeFetcher, url: str
) -> None:
    dns = FakeDNS({})
    message = await refusal(make_fetcher(resolve=dns).fetch(url))
    assert "points to a private or local address" in message
    assert dns.calls == []


async def test_the_local_server_itself_is_refused_unless_allowed(
    served: Served, make_fetcher: MakeFetcher
) -> None:
    message = await refusal(make_fetcher(allow_hosts=frozenset()).fetch(served.url("/file/png")))
    assert "points to a private or local address" in message
    assert served.hosts == []


async def test_an_unknown_host_is_named(make_fetcher: MakeFetcher) -> None:
    message = await refusal(make_fetcher(resolve=FakeDNS({})).fetch("https://nowhere.test/cat.png"))
    assert (
        message == "I can't find the server `nowhere.test` of `https://nowhere.test/cat.png`; check the link."
    )


async def test_the_connection_goes_to_the_checked_address(served: Served, make_fetcher: MakeFetcher) -> None:
    # cdn.test exists in no DNS: reaching the server at all shows aiohttp used the pinned answer.
    dns = FakeDNS({"cdn.test": ["127.0.0.1"]})
    fetcher = make_fetcher(resolve=dns, allow_hosts=frozenset({f"cdn.test:{served.port}"}))
    await fetcher.fetch(served.url("/file/png", host="cdn.test"))
    assert served.hosts == [f"cdn.test:{served.port}"]
    assert dns.calls == [("cdn.test", served.port)]

    await fetcher.fetch(served.url("/redirect/2", host="cdn.test"))
    assert len(dns.calls) == 1 + 3  # once per hop, and aiohttp never asked again


@pytest.mark.parametrize(
    ("allowed", "port_matches"), [("cdn.test", True), ("CDN.test:{port}", True), ("cdn.test:1", False)]
)
async def test_the_allow_list_takes_a_host_or_a_host_and_port(
    served: Served, make_fetcher: MakeFetcher, allowed: str, port_matches: bool
) -> None:
    dns = FakeDNS({"cdn.test": ["127.0.0.1"]})
    fetcher = make_fetcher(resolve=dns, allow_hosts=frozenset({allowed.format(port=served.port)}))
    fetch = fetcher.fetch(served.url("/file/png", host="cdn.test"))
    if port_matches:
        await fetch
    else:
        assert "private or local address" in await refusal(fetch)


@pytest.mark.parametrize("hops", [0, 3])
async def test_up_to_three_redirects_are_followed(
    served: Served, make_fetcher: MakeFetcher, hops: int
) -> None:
    fetched = await make_fetcher().fetch(served.url(f"/redirect/{hops}"))
    assert fetched.data == PNG
    assert len(served.hosts) == hops + 1


async def test_a_fourth_redirect_is_refused(served: Served, make_fetcher: MakeFetcher) -> None:
    message = await refusal(make_fetcher().fetch(served.url("/redirect/4")))
    assert message == (
        f"`{served.url('/redirect/4')}` redirects more than 3 times; give the link to the image itself."
    )
    assert len(served.hosts) == 4


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/file/png", "http://localhost:{port}/file/png"])
async def test_a_redirect_into_loopback_is_refused(
    served: Served, make_fetcher: MakeFetcher, target: str
) -> None:
    dns = FakeDNS({"cdn.test": ["127.0.0.1"], "localhost": ["127.0.0.1", "::1"]})
    fetcher = make_fetcher(resolve=dns, allow_hosts=frozenset({"cdn.test"}))
    url = served.url("/to", host="cdn.test") + "?location=" + target.format(port=served.port)
    message = await refusal(fetcher.fetch(url))
    assert message == (
        f"`{served.url('/to', host='cdn.test')}` redirects to a private or local address, "
        "so I won't fetch it; use a public link, or attach the image."
    )
    assert served.hosts == [f"cdn.test:{served.port}"]  # the second hop never happened


@pytest.mark.parametrize("target", ["file:///etc/passwd", "gopher://127.0.0.1/"])
async def test_a_redirect_away_from_the_web_is_refused(
    served: Served, make_fetcher: MakeFetcher, target: str
) -> None:
    message = await refusal(make_fetcher().fetch(served.url(f"/to?location={target}")))
    assert "redirects away from the web" in message


async def test_a_long_link_is_shortened_and_loses_its_query(make_fetcher: MakeFetcher) -> None:
    url = "ftp://cdn.example.com/attachments/" + "1234567890" * 8 + "/cat.png?ex=abc&is=def&hm=" + "f" * 64
    message = await refusal(make_fetcher().fetch(url))
    assert message.startswith(
        "`ftp://cdn.example.com/attachme…012345678901234567890/cat.png` is not a web link"
    )


# --- TLS ---------------------------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for cdn.test (and no IP address), made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-days", "1", "-subj", "/CN=cdn.test", "-addext", "subjectAltName=DNS:cdn.test"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


async def test_https_verifies_the_certificate_against_the_host_name(certificate: tuple[Path, Path]) -> None:
    key, cert = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    dns = FakeDNS({"cdn.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    async with (
        serving(server_context) as served,
        ImageFetcher(
            max_bytes=MiB,
            max_pixels=4_000_000,
            timeout_s=2,
            connect_timeout_s=1,
            allow_hosts=frozenset({"cdn.test", "other.test"}),
            resolve=dns,
            ssl_context=ssl.create_default_context(cafile=cert),
        ) as fetcher,
    ):
        # Connected to 127.0.0.1, verified as cdn.test: the certificate names no IP address.
        assert (await fetcher.fetch(served.url("/file/png", host="cdn.test", scheme="https"))).data == PNG
        other = served.url("/file/png", host="other.test", scheme="https")
        message = await refusal(fetcher.fetch(other))
        assert message == f"`{other}` has no valid HTTPS certificate, so I won't fetch it."


# --- addresses, property-based -----------------------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def oracle(address: IPAddress) -> bool:
    """Public or not, from the standard library's flags, plus what they leave out."""
    if isinstance(address, ipaddress.IPv4Address):
        return (
            address.is_global
            and not address.is_multicast  # is_global counts multicast in
            and address not in ipaddress.IPv4Network("192.0.0.0/24")  # whole, not just the parts it lists
        )
    # An address that only carries an IPv4 one goes wherever that one goes.
    if address.ipv4_mapped is not None:
        return oracle(address.ipv4_mapped)
    if address in _NAT64:
        return oracle(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None:
        return oracle(address.sixtofour)
    return (
        address.is_global
        and not address.is_reserved
        and not address.is_multicast
        and not address.is_site_local
        and address not in ipaddress.IPv6Network("2001::/23")  # newer Pythons call a few parts global
        and address not in ipaddress.IPv6Network("3fff::/20")  # documentation, newer than some Pythons
    )


def mapped(v4: ipaddress.IPv4Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(0xFFFF << 32 | int(v4))


def nat64(v4: ipaddress.IPv4Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(int(_NAT64.network_address) | int(v4))


def sixtofour(v4: ipaddress.IPv4Address, host: int = 1) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(0x2002 << 112 | int(v4) << 80 | host)


Embedding = Callable[[ipaddress.IPv4Address], ipaddress.IPv6Address]
EMBEDDINGS: list[Embedding] = [mapped, nat64, sixtofour]
NOT_PUBLIC_V4 = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
]
not_public_v4 = st.sampled_from(NOT_PUBLIC_V4).flatmap(lambda network: st.ip_addresses(network=network))


@given(st.ip_addresses())
def test_is_public_address_agrees_with_the_oracle(address: IPAddress) -> None:
    assert is_public_address(address) == oracle(address)


@given(st.ip_addresses(v=4), st.sampled_from(EMBEDDINGS))
def test_an_embedded_ipv4_address_decides(v4: ipaddress.IPv4Address, embed: Embedding) -> None:
    assert is_public_address(embed(v4)) == is_public_address(v4) == oracle(embed(v4))


@given(not_public_v4, st.sampled_from(EMBEDDINGS))
def test_a_private_ipv4_address_stays_private_in_any_ipv6_form(
    v4: ipaddress.IPv4Address, embed: Embedding
) -> None:
    assert not is_public_address(v4)
    assert not is_public_address(embed(v4))


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::808:808", True),  # NAT64 on an IPv6-only host: where an IPv4-only site lives
        ("255.255.255.255", False),
        ("::", False),
        ("::127.0.0.1", False),  # IPv4-compatible, deprecated
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
        ("2002:a00:1::1", False),  # 6to4 around 10.0.0.1
        ("fec0::1", False),
        ("fc00::1", False),
        ("fe80::1", False),
        ("ff02::1", False),
        ("64:ff9b:1::808:808", False),  # local-use NAT64
    ],
)
def test_known_addresses(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public
