"""An event loop that does nothing but measure itself: how late the machine alone makes a loop run.

Run beside a benchmark (`python -m bench._idle_loop`), it logs the same `health:` lines as the bot
(bot/health.py) every 2 s to stderr until SIGTERM, so the bot's lag can be read against the machine's.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from bot.health import watch_health


async def main() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with watch_health(2.0):
        await stop.wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(main())
