"""The health line: how late the event loop runs, and the process's memory."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import pytest

from bot.health import memory_mib, watch_health

LINE = re.compile(
    r"health: event loop late p99 (?P<p99>[\d.]+) ms, max (?P<max>[\d.]+) ms "
    r"\((?P<late>\d+) of (?P<ticks>\d+) ticks over 20 ms\); memory (?P<mib>\d+) MiB"
)


async def _lines(caplog: pytest.LogCaptureFixture, *, block_s: float) -> list[re.Match[str]]:
    with caplog.at_level(logging.INFO, logger="bot.health"):
        async with watch_health(0.3):
            await asyncio.sleep(0.1)
            time.sleep(block_s)  # noqa: ASYNC251 - the loop held up, as a blocking call in a handler would
            await asyncio.sleep(0.35)
    return [m for r in caplog.records if (m := LINE.fullmatch(r.getMessage()))]


async def test_a_blocked_loop_shows_in_the_health_line(caplog: pytest.LogCaptureFixture) -> None:
    (first, *_) = await _lines(caplog, block_s=0.12)
    assert int(first["late"]) >= 1
    assert float(first["max"]) >= 100  # the 120 ms it was held up, less the tick it was due in
    assert int(first["ticks"]) >= 2
    assert abs(int(first["mib"]) - memory_mib()) < 50


async def test_no_line_when_switched_off(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="bot.health"):
        async with watch_health(0):
            await asyncio.sleep(0.05)
    assert caplog.records == []
