"""`imaginebot run`: the composition root.

settings → database (migrations applied) → engine backend (loaded in a thread) → queue → job
service → bot. Everything is built here, once, and passed down; nothing is created at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

import discord

from bot.client import INTENTS, ImagineBot
from bot.jobs import JobService
from bot.settings import Settings
from bot.store.db import Database
from bot.store.errors import StoreError
from bot.store.migrate import upgrade
from engine.backend import Backend
from engine.errors import EngineError
from engine.queue import LocalQueue

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


def load_engine(settings: Settings) -> Backend:
    """Load the configured model (slow, synchronous: call it in a thread)."""
    from engine.backends import load_backend

    return load_backend(
        settings.model,
        device=settings.device,
        aliases=settings.model_aliases,
        diffusion_upscale=settings.diffusion_upscale,
    )


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # discord.py's HTTP debug lines would include request details; keep it at INFO or above.
    logging.getLogger("discord.http").setLevel(max(logging.INFO, logging.getLevelName(settings.log_level)))


async def run(settings: Settings, *, backend: Backend | None = None) -> int:
    """Build everything, run the bot until it is closed or signalled, close everything."""
    token = settings.discord_token
    if token is None:
        print(f"imaginebot: {NO_TOKEN_MESSAGE}", file=sys.stderr)
        return EXIT_USAGE
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await upgrade(settings.database_url)
    db = await Database.connect(settings.database_url)
    try:
        if backend is None:
            log.info("loading model %s …", settings.model)
            backend = await asyncio.to_thread(load_engine, settings)
        queue = LocalQueue(
            [backend],
            max_running_per_owner=settings.max_running_per_owner,
            max_waiting_per_owner=settings.max_waiting_per_owner,
        )
        await queue.start()
        jobs = JobService(db=db, queue=queue, settings=settings)
        try:
            async with ImagineBot(settings=settings, db=db, queue=queue, jobs=jobs, intents=INTENTS) as bot:
                _close_on_signals(bot)
                await bot.start(token)
        finally:
            # Jobs still waiting or running stay `queued`/`running` in the database: the next
            # start resumes them.
            await queue.close(grace_s=SHUTDOWN_GRACE_S)
            await jobs.close()
            await asyncio.to_thread(backend.close)
    finally:
        await db.close()
    return 0


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
    await bot.queue.close(grace_s=SHUTDOWN_GRACE_S)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(bot.jobs.wait_idle(), timeout=10.0)
    await bot.close()


def main(settings: Settings) -> int:
    """Entry point of `imaginebot run`; one sentence and a non-zero exit on a setup problem."""
    if settings.discord_token is None:
        print(f"imaginebot: {NO_TOKEN_MESSAGE}", file=sys.stderr)
        return EXIT_USAGE
    _configure_logging(settings)
    try:
        return asyncio.run(run(settings))
    except (StoreError, EngineError) as exc:
        print(f"imaginebot: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except discord.LoginFailure:
        print(f"imaginebot: Discord rejected DISCORD_TOKEN. {NO_TOKEN_MESSAGE}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 0
