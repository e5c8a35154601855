"""The web gallery: every image the server made, its recipe and its family tree, in a browser.

`imaginebot run` serves it beside the bot (`serve_gallery`); members open it with a signed link from
`/gallery` (`GalleryKeys`). Private parts: `_access` (links, sessions, who sees what), `_pages` (the
handlers), `_filters` (search), `_thumbs` (WebP thumbnails), `_charts` (the admin page's plots),
`_server` (the application, its headers, serving it).
"""

from __future__ import annotations

from bot.web._access import SESSION_TTL_S, AccessDenied, GalleryKeys, Pass, may_see, may_see_server
from bot.web._server import SECURITY_HEADERS, GalleryUnavailable, RunningGallery, build_app, serve_gallery

__all__ = [
    "SECURITY_HEADERS",
    "SESSION_TTL_S",
    "AccessDenied",
    "GalleryKeys",
    "GalleryUnavailable",
    "Pass",
    "RunningGallery",
    "build_app",
    "may_see",
    "may_see_server",
    "serve_gallery",
]
