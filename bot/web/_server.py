"""The gallery's aiohttp application: routes, security headers, error pages, and serving it beside the bot.

It runs on the bot's own event loop (`imaginebot run` starts it with the bot) and only reads: the
database through short read-only sessions, image files through sendfile, thumbnails on their own
thread. Nothing it does waits on the GPU or holds the loop for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Final

from aiohttp import web

from bot.web._pages import Pages
from bot.web._thumbs import Thumbnails

if TYPE_CHECKING:  # bot.services builds the gallery's keys, so it imports this package first
    from bot.services import Services

__all__ = ["SECURITY_HEADERS", "GalleryUnavailable", "RunningGallery", "build_app", "serve_gallery"]

log = logging.getLogger("bot.web")

SECURITY_HEADERS: Final = {
    # Only our own stylesheet, script and images; no inline code; never inside another site's frame.
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # A /gallery link carries its pass in the query string: never send it on to another site.
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

_STATIC: Final = {"gallery.css": "text/css", "gallery.js": "text/javascript", "favicon.svg": "image/svg+xml"}
_GUILD = r"{guild:\d{1,20}}"
_JOB = r"{job:[0-9a-f]{32}}"


class GalleryUnavailable(Exception):
    """The gallery cannot listen where it is told to; the message names the setting to change."""


@dataclass(frozen=True, slots=True)
class RunningGallery:
    url: str
    """Where it answers (the bound address; `IMAGINE_WEB_URL` is what members are sent to)."""
    app: web.Application


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.content_type == "text/html":
        response.headers["Cache-Control"] = "no-store"  # pages depend on who is signed in


def _error_pages(pages: Pages) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status not in (404, 405):
                raise
            return pages.render(request, "missing.html", status=exc.status)

    return middleware


def build_app(pages: Pages) -> web.Application:
    """The gallery's routes over `pages` (every URL is under the server's id, so cookies stay per server)."""
    app = web.Application(middlewares=[_error_pages(pages)])
    app.on_response_prepare.append(_security_headers)
    static = {name: (resources.files("bot.web") / "static" / name).read_bytes() for name in _STATIC}

    async def static_file(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in static:
            raise web.HTTPNotFound()
        return web.Response(
            body=static[name], content_type=_STATIC[name], headers={"Cache-Control": "public, max-age=3600"}
        )

    app.add_routes(
        [
            web.get("/", pages.index),
            web.get("/login", pages.login),
            web.get("/static/{name}", static_file),
            web.get("/favicon.ico", _favicon),
            web.get(f"/g/{_GUILD}/", pages.gallery),
            web.get(f"/g/{_GUILD}/{{mine:me}}", pages.gallery),
            web.get(f"/g/{_GUILD}/admin", pages.admin),
            web.get(f"/g/{_GUILD}/jobs/{_JOB}", pages.job),
            web.get(f"/g/{_GUILD}/jobs/{_JOB}/{{index:[0-4]}}.png", pages.image),
            web.get(f"/g/{_GUILD}/jobs/{_JOB}/{{index:[0-4]}}-{{size:[tm]}}.webp", pages.image),
        ]
    )
    return app


async def _favicon(request: web.Request) -> web.Response:
    # Browsers ask every site for /favicon.ico; ours is the SVG the pages name.
    raise web.HTTPMovedPermanently("/static/favicon.svg")


@contextlib.asynccontextmanager
async def serve_gallery(
    services: Services,
    *,
    guild_name: Callable[[int], str | None] = lambda _: None,
    host: str | None = None,
    port: int | None = None,
) -> AsyncIterator[RunningGallery]:
    """Serve the gallery on `IMAGINE_WEB_HOST:IMAGINE_WEB_PORT` (or `host`/`port`; port 0 = any free
    one) until the block ends. `guild_name` names a server by its id (the bot's cache)."""
    from bot.services import worker_models

    config = services.config
    host = host or config.web_host
    port = config.web_port if port is None else port
    thumbnails = Thumbnails(config.data_dir / "thumbs")
    try:
        await asyncio.to_thread(thumbnails.start)
        pages = Pages(
            config=config,
            db=services.db,
            keys=services.gallery_keys,
            thumbnails=thumbnails,
            guild_name=guild_name,
            models=tuple(worker_models(config)),
        )
        runner = web.AppRunner(build_app(pages), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            yield await _listen(runner, host, port, config.gallery_url)
        finally:
            await runner.cleanup()
    finally:
        thumbnails.close()


async def _listen(runner: web.AppRunner, host: str, port: int, public_url: str) -> RunningGallery:
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        raise GalleryUnavailable(
            f"The web gallery cannot listen on {host}:{port} ({exc.strerror or exc}); set "
            "IMAGINE_WEB_PORT to a free port, IMAGINE_WEB_HOST to an address of this machine, "
            "or IMAGINE_WEB_PORT=0 for none."
        ) from None
    bound_host, bound_port = runner.addresses[0][:2]
    url = f"http://[{bound_host}]:{bound_port}" if ":" in bound_host else f"http://{bound_host}:{bound_port}"
    log.info("web gallery on %s (members are sent to %s)", url, public_url)
    return RunningGallery(url, runner.app)
