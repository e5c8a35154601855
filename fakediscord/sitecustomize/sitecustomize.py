"""Point discord.py at a loopback fake Discord in a subprocess (e.g. `imaginebot run` in a test).

Used as `PYTHONPATH=fakediscord/sitecustomize FAKE_DISCORD_URL=http://127.0.0.1:PORT imaginebot run`:
Python imports `sitecustomize` at start-up; with `FAKE_DISCORD_URL` set, the two redirects are applied
as soon as `discord` is importable. Without the variable this module does nothing.
"""

from __future__ import annotations

import contextlib
import os


def _redirect(url: str) -> None:
    import discord.gateway
    import discord.http
    import yarl

    base = url.rstrip("/")
    discord.http.Route.BASE = f"{base}/api/v10"
    ws = "ws" + base.removeprefix("http")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"{ws}/gateway/")


_URL = os.environ.get("FAKE_DISCORD_URL")
if _URL:
    # discord.py absent from this interpreter: nothing to redirect.
    with contextlib.suppress(ImportError):
        _redirect(_URL)
