"""The bot's own health in its log: how late its event loop runs, and how much memory it holds.

Every `IMAGINE_HEALTH_INTERVAL_S` seconds one line says it, e.g.
`health: event loop late p99 3.1 ms, max 12.0 ms (2 of 1200 ticks over 20 ms); memory 112 MiB`.
A loop that runs late delays every button press and progress edit, so this is the first thing to look
at when the bot feels slow; the cost is a timer twenty times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import resource
import time
from collections.abc import AsyncIterator

__all__ = ["TICK_S", "freeze_startup_heap", "memory_mib", "watch_health"]

log = logging.getLogger(__name__)

TICK_S = 0.05
"""How often the loop is asked to wake; how late it wakes is its lag."""

_LATE_MS = 20.0


def memory_mib() -> float:
    """The process's resident memory (its peak where /proc is missing)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak_kib / 1024


def freeze_startup_heap() -> None:
    """Leave every object that exists now (modules, the model, the services) out of the collector's
    full passes from here on. Those objects live as long as the process, and walking them stalled
    the bot's loop 100-200 ms at each full pass in the load test (docs/benchmarks.md); call once,
    when start-up is done. This collection itself takes about as long, once."""
    gc.collect()
    gc.freeze()


async def _watch(interval_s: float) -> None:
    while True:
        lags: list[float] = []
        end = time.monotonic() + interval_s
        while time.monotonic() < end:
            asked = time.monotonic()
            await asyncio.sleep(TICK_S)
            lags.append((time.monotonic() - asked - TICK_S) * 1000)
        lags.sort()
        late = sum(1 for lag in lags if lag > _LATE_MS)
        log.info(
            "health: event loop late p99 %.1f ms, max %.1f ms (%d of %d ticks over %.0f ms); memory %.0f MiB",
            lags[int(len(lags) * 0.99)],
            lags[-1],
            late,
            len(lags),
            _LATE_MS,
            memory_mib(),
        )


@contextlib.asynccontextmanager
async def watch_health(interval_s: float) -> AsyncIterator[None]:
    """Log the health line every `interval_s` seconds while the block runs (0: never)."""
    if interval_s <= 0:
        yield
        return
    task = asyncio.get_running_loop().create_task(_watch(interval_s), name="health")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
