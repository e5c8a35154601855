"""Benchmark: database transactions per job, through the job service as the bot runs it.

Run from the repository root:  .venv/bin/python -m bench.job_sessions [--jobs 50] [--url URL]

The services come from `bot.services` (migrated SQLite file, queue, job service) with a simulated GPU
that takes 50 ms a job, and a presenter that answers as Discord does (every message posted gets an id;
the first message is the interaction's answer, as /imagine and the buttons give it). For `--jobs`
/imagine grids and as many U presses on them, it counts the transactions the job service opens —
writing and read-only — from the request to the job row marked succeeded, and prints them per job.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bot.config import Config
from bot.jobs import ButtonAction, JobCard, JobTicket, Requester
from bot.services import open_services
from engine.images import SavedImages
from engine.simulated import SimulatedBackend
from engine.types import Progress

MEMBER = Requester(user_id=7, guild_id=1, channel_id=2)


class DiscordLikePresenter:
    """Posts nothing; hands out message ids as Discord would."""

    progress_interval_s = 0.0

    def __init__(self) -> None:
        self._ids = itertools.count(1000)

    async def show_waiting(self, card: JobCard) -> int | None:
        return next(self._ids)

    async def show_progress(self, card: JobCard, progress: Progress) -> None:
        pass

    async def show_result(self, card: JobCard, saved: SavedImages) -> int | None:
        return card.message_id

    async def show_failure(self, card: JobCard, reason: str) -> None:
        raise AssertionError(f"job {card.job_id} failed: {reason}")


async def main(jobs: int, url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(_env_file=None, data_dir=Path(tmp), database_url_setting=url)  # type: ignore[call-arg]
        backend = SimulatedBackend(seconds=0.05, steps=2)
        async with open_services(config, backend=backend) as services:
            transactions: Counter[str] = Counter()

            def on_begin(connection: Any) -> None:
                read_only = connection.get_execution_options().get("imaginebot_read_only", False)
                transactions["read-only" if read_only else "writing"] += 1

            event.listen(services.db.engine.sync_engine, "begin", on_begin)
            await services.jobs.start(DiscordLikePresenter(), recover=False)
            message_ids = itertools.count(1)

            async def run(ticket: JobTicket) -> str:
                ticket.show_in(next(message_ids))  # the interaction's answer, as the cogs give it
                await services.jobs.wait_idle()
                return ticket.card.job_id

            grids = [
                await run((await services.jobs.imagine(MEMBER, f"a lighthouse, take {n} --ar 16:9"))[0])
                for n in range(jobs)
            ]
            counts = {"/imagine": Counter(transactions)}
            transactions.clear()
            for grid in grids:
                await run(await services.jobs.press(MEMBER, ButtonAction.UPSCALE, grid, 1))
            counts["U1"] = Counter(transactions)
    print(f"database: {'SQLite (WAL)' if url is None else url}; {jobs} jobs of each kind, one at a time")
    for kind, counted in counts.items():
        writing, read_only = counted["writing"] / jobs, counted["read-only"] / jobs
        print(f"{kind}: {writing:.2f} writing + {read_only:.2f} read-only transactions per job")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.url))
