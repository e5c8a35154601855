"""`imaginebot run`: the services, the Discord bot on them, and a clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

import discord

from bot.client import INTENTS, ImagineBot
from bot.config import Config
from bot.health import freeze_startup_heap, watch_health
from bot.services import Services, open_services
from bot.store.errors import StoreError
from bot.web import GalleryUnavailable, serve_gallery
from engine.backend import Backend
from engine.errors import CredentialsRejected, EngineError, QueueUnavailable

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "NO_TOKEN_MESSAGE", "main", "run"]

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 10.0
"""How long running jobs may go on after SIGINT/SIGTERM before they are left for the next start."""

EXIT_USAGE = 2
EXIT_FAILURE = 1

NO_TOKEN_MESSAGE = (
    "Set DISCORD_TOKEN to your bot's token: create an application at "
    "https://discord.com/developers/applications → Bot → Reset Token, and invite it with the "
    "`bot` and `applications.commands` scopes; it needs no privileged intents."
)


async def run(config: Config, token: str, *, backend: Backend | None = None) -> None:
    """Build everything, run the bot until it is closed or signalled, close everything."""
    async with (
        open_services(config, backend=backend, grace_s=SHUTDOWN_GRACE_S) as services,
        ImagineBot(services, intents=INTENTS) as bot,
        _gallery(services, bot),
        watch_health(config.health_interval_s),
    ):
        _close_on_signals(bot)
        freeze_startup_heap()
        await bot.start(token)


def _gallery(services: Services, bot: ImagineBot) -> contextlib.AbstractAsyncContextManager[object]:
    """The web gallery beside the bot, naming servers from the bot's cache; none with port 0."""
    if services.config.web_port == 0:
        return contextlib.nullcontext()

    def guild_name(guild_id: int) -> str | None:
        guild = bot.get_guild(guild_id)
        return guild.name if guild is not None else None

    return serve_gallery(services, guild_name=guild_name)


def _close_on_signals(bot: ImagineBot) -> None:
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def on_signal(sig: signal.Signals) -> None:
        log.info(
            "received %s; finishing running jobs for up to %.0fs, then closing", sig.name, SHUTDOWN_GRACE_S
        )
        task = loop.create_task(_shutdown(bot))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows has no add_signal_handler
            loop.add_signal_handler(sig, on_signal, sig)


async def _shutdown(bot: ImagineBot) -> None:
    # The queue first, while Discord is still connected: jobs that finish in the grace period are
    # posted; the rest are interrupted and stay unfinished in the database for the next start.
    await bot.jobs.queue.close(grace_s=SHUTDOWN_GRACE_S)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(bot.jobs.wait_idle(), timeout=10.0)
    await bot.close()


def main(config: Config) -> int:
    """Entry point of `imaginebot run`; one sentence and a non-zero exit on a setup problem."""
    if config.discord_token is None:
        print(f"imaginebot: {NO_TOKEN_MESSAGE}", file=sys.stderr)
        return EXIT_USAGE
    # discord.py's HTTP debug lines would include request details; keep it at INFO or above.
    logging.getLogger("discord.http").setLevel(max(logging.INFO, logging.getLevelName(config.log_level)))
    try:
        asyncio.run(run(config, config.discord_token))
    except (QueueUnavailable, CredentialsRejected, GalleryUnavailable) as exc:  # a setting to fix
        print(f"imaginebot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (StoreError, EngineError) as exc:
        print(f"imaginebot: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except discord.LoginFailure:
        print(f"imaginebot: Discord rejected DISCORD_TOKEN. {NO_TOKEN_MESSAGE}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        pass
    return 0
