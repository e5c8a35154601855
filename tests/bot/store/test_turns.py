"""SQLite's writers take turns in the bot's process: urgent ones first, in arrival order within each."""

from __future__ import annotations

import asyncio

from bot.store._turns import WriterTurns


async def _writer(turns: WriterTurns, name: str, urgent: bool, order: list[str], hold: asyncio.Event) -> None:
    async with turns.turn(urgent=urgent):
        order.append(name)
        await hold.wait()


async def test_urgent_writers_go_first_and_each_line_keeps_its_order() -> None:
    turns, order, hold = WriterTurns(), [], asyncio.Event()
    first = asyncio.create_task(_writer(turns, "holder", False, order, hold))
    await asyncio.sleep(0)  # it holds the turn
    tasks = [
        asyncio.create_task(_writer(turns, name, urgent, order, hold))
        for name, urgent in [("bg1", False), ("ask1", True), ("bg2", False), ("ask2", True)]
    ]
    await asyncio.sleep(0)
    assert order == ["holder"]  # everyone else waits
    hold.set()
    await asyncio.gather(first, *tasks)
    assert order == ["holder", "ask1", "ask2", "bg1", "bg2"]


async def test_a_writer_that_gives_up_does_not_block_the_line() -> None:
    turns, order, hold = WriterTurns(), [], asyncio.Event()
    holder = asyncio.create_task(_writer(turns, "holder", False, order, hold))
    await asyncio.sleep(0)
    quitter = asyncio.create_task(_writer(turns, "quitter", True, order, hold))
    later = asyncio.create_task(_writer(turns, "later", False, order, hold))
    await asyncio.sleep(0)
    quitter.cancel()
    hold.set()
    await asyncio.gather(holder, later)
    assert order == ["holder", "later"]
    async with asyncio.timeout(1):  # the turn is free again
        async with turns.turn(urgent=False):
            pass


async def test_a_writer_cancelled_after_its_turn_came_hands_it_on() -> None:
    turns, order, hold = WriterTurns(), [], asyncio.Event()
    hold.set()
    async with turns.turn(urgent=False):  # this test holds the turn
        unlucky = asyncio.create_task(_writer(turns, "unlucky", True, order, hold))
        after = asyncio.create_task(_writer(turns, "after", False, order, hold))
        await asyncio.sleep(0)  # both wait in line
    # The turn was handed to "unlucky", which has not run yet; it is cancelled before it does.
    unlucky.cancel()
    async with asyncio.timeout(2):  # without the hand-on, "after" would wait forever
        await asyncio.gather(unlucky, after, return_exceptions=True)
    assert order == ["after"]
    assert unlucky.cancelled()
