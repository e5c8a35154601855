"""The bot with `IMAGINE_QUEUE_URL`: jobs run on real `imaginebot worker` subprocesses through a real
Redis, shown through the loopback fake Discord. The GPU is the only fake (`IMAGINE_MODEL=simulated:…`).

Workers are killed for real (SIGKILL, SIGSTOP), the bot is stopped as a crash would stop it, and the
bot's keys in Redis are deleted mid-run as a FLUSHDB would: every job still ends in one grid or one
clear notice, and the database says what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from bot.app import EXIT_USAGE
from bot.app import main as run_main
from bot.config import Config
from bot.store.models import Job, JobStatus
from bot.worker_cli import main as worker_main
from fakediscord import FakeDiscord, MessageRecord
from tests.bot.discord_fixtures import BotWorld, custom_id, imagine_grid, make_config, started_bot

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 1.0
SLOW = "simulated:seconds=3,steps=30"
"""A job that runs long enough to kill its worker in the middle (30 steps of 0.1 s)."""
QUICK = "simulated:seconds=0.2,steps=4"


class Workers:
    """`imaginebot worker` subprocesses for one test, all on its key prefix."""

    def __init__(self, redis_url: str, prefix: str, folder: Path) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.folder = folder
        self.procs: dict[str, asyncio.subprocess.Process] = {}

    async def start(self, name: str, model: str, *, aliases: str = "{}") -> asyncio.subprocess.Process:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "IMAGINE_QUEUE_URL": self.redis_url,
            "IMAGINE_QUEUE_PREFIX": self.prefix,
            "IMAGINE_LEASE_S": str(LEASE_S),
            "IMAGINE_MODEL": model,
            "IMAGINE_MODEL_ALIASES": aliases,
            "IMAGINE_LOG_LEVEL": "INFO",
        }
        log = (self.folder / f"{name}.log").open("ab")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "worker", "--name", name, env=env, cwd=self.folder, stderr=log
        )
        log.close()
        self.procs[name] = proc
        await self._until_registered(name)
        return proc

    async def _until_registered(self, name: str) -> None:
        client = aioredis.Redis.from_url(self.redis_url)
        try:
            async with asyncio.timeout(30):
                while not await client.exists(f"{self.prefix}:worker:{name}"):
                    assert self.procs[name].returncode is None, self.log(name)
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text()

    async def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)
                    proc.kill()
                await proc.wait()


@pytest.fixture
async def workers(redis7_url: str, redis_prefix: str, tmp_path: Path) -> AsyncIterator[Workers]:
    folder = tmp_path / "workers"
    folder.mkdir()
    made = Workers(redis7_url, redis_prefix, folder)
    yield made
    await made.stop_all()


def remote_config(tmp_path: Path, workers: Workers, model: str = QUICK, **overrides: object) -> Config:
    return make_config(
        tmp_path / "bot",
        queue_url=workers.redis_url,
        queue_prefix=workers.prefix,
        lease_s=LEASE_S,
        model=model,
        **overrides,
    )


async def jobs_in(world: BotWorld) -> list[Job]:
    async with world.services.db.session(read_only=True) as session:
        return list((await session.scalars(select(Job).order_by(Job.created_at))).all())


def grids(fake: FakeDiscord, start: str) -> list[MessageRecord]:
    return [
        m for m in fake.messages_in(fake.channel) if m.content.startswith(start) and len(m.custom_ids()) == 9
    ]


# --- the path --------------------------------------------------------------------------------------


async def test_a_grid_and_its_upscale_come_from_a_remote_worker(
    fake_discord: FakeDiscord, tmp_path: Path, workers: Workers
) -> None:
    await workers.start("gpu0", QUICK)
    async with started_bot(fake_discord, remote_config(tmp_path, workers), None) as world:
        grid = await imagine_grid(world, "a lighthouse --seed 5")
        press = await fake_discord.click(grid, custom_id(grid, "U2"))
        await press.response(timeout=3)
        upscale = await fake_discord.wait_for_message(
            lambda m: "Image #2" in m.content and bool(m.attachments)
        )
        await world.jobs.wait_idle()
        jobs = await jobs_in(world)
    assert [(job.status, job.attempts, job.model) for job in jobs] == [(JobStatus.SUCCEEDED, 1, QUICK)] * 2
    assert jobs[0].seeds == [5, 6, 7, 8]
    assert upscale.attachments
    assert "job " in workers.log("gpu0")  # it ran them, not the bot


async def test_a_worker_without_the_jobs_model_never_gets_it(
    fake_discord: FakeDiscord, tmp_path: Path, workers: Workers
) -> None:
    anime = "simulated:seconds=0.1,steps=2,previews=false"
    await workers.start("plain", QUICK)
    await workers.start("anime", anime)
    config = remote_config(tmp_path, workers, model_aliases={"niji": anime})
    async with started_bot(fake_discord, config, None) as world:
        for n in range(3):
            await imagine_grid(world, f"a fox {n} --niji")
        await imagine_grid(world, "a plain fox")
        await world.jobs.wait_idle()
        models = [job.model for job in await jobs_in(world)]
    assert models == [anime, anime, anime, QUICK]
    assert workers.log("plain").count(" done in ") == 1
    assert workers.log("anime").count(" done in ") == 3


# --- losing workers, the bot, and Redis ------------------------------------------------------------


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
async def test_a_worker_lost_mid_job_means_its_job_finishes_on_another_and_is_shown_once(
    fake_discord: FakeDiscord, tmp_path: Path, workers: Workers, how: str
) -> None:
    first = await workers.start("first", SLOW)
    async with started_bot(fake_discord, remote_config(tmp_path, workers, model=SLOW), None) as world:
        interaction = await fake_discord.slash("imagine", {"prompt": "a survivor"})
        message = await interaction.wait_original()
        await fake_discord.wait_for(lambda _: message.content.endswith("%)"), timeout=15, what="progress")
        await workers.start("second", SLOW)
        first.send_signal(signal.SIGKILL if how == "SIGKILL" else signal.SIGSTOP)
        await fake_discord.wait_for(
            lambda _: len(message.custom_ids()) == 9, timeout=30, what="the grid, from the second worker"
        )
        if how == "SIGSTOP":  # the first comes back and finishes or stops its run; that news is dropped
            first.send_signal(signal.SIGCONT)
            await asyncio.sleep(2 * LEASE_S)
        await world.jobs.wait_idle()
        (job,) = await jobs_in(world)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 2)
    assert len(grids(fake_discord, "**a survivor**")) == 1
    assert len([r for r in message.history if len(r.components) == 2]) == 1  # the grid was posted once
    assert "run 2: done" in workers.log("second")


async def test_a_result_that_comes_while_the_bot_is_down_is_posted_after_its_restart(
    fake_discord: FakeDiscord, tmp_path: Path, workers: Workers
) -> None:
    await workers.start("gpu0", SLOW)
    config = remote_config(tmp_path, workers, model=SLOW)
    async with started_bot(fake_discord, config, None, wait_jobs=False) as world:
        interaction = await fake_discord.slash("imagine", {"prompt": "finished in the dark"})
        message = await interaction.wait_original()
        await fake_discord.wait_for(lambda _: message.content.endswith("%)"), timeout=15, what="progress")
    # The bot is gone; the worker finishes and its result waits in Redis.
    await _until(lambda: "run 1: done" in workers.log("gpu0"))
    async with started_bot(fake_discord, config, None) as world:
        await fake_discord.wait_for(lambda _: len(message.custom_ids()) == 9, timeout=15, what="the grid")
        await world.jobs.wait_idle()
        (job,) = await jobs_in(world)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)  # delivered, not run again
    assert workers.log("gpu0").count(" done in ") == 1


async def test_when_redis_loses_everything_every_unfinished_job_still_finishes(
    fake_discord: FakeDiscord, tmp_path: Path, workers: Workers
) -> None:
    await workers.start("gpu0", "simulated:seconds=1,steps=10")
    config = remote_config(tmp_path, workers, model="simulated:seconds=1,steps=10")
    async with started_bot(fake_discord, config, None) as world:
        fake = fake_discord
        messages = []
        for user, prompt in [(fake.member, "one"), (fake.other_member, "two"), (fake.admin, "three")]:
            interaction = await fake.slash("imagine", {"prompt": prompt}, user=user)
            messages.append(await interaction.wait_original())
        await fake.wait_for(lambda _: messages[0].content.endswith("%)"), timeout=15, what="progress")
        client = aioredis.Redis.from_url(workers.redis_url)
        try:  # FLUSHDB, for this test's keys only (the server is shared)
            async for key in client.scan_iter(match=f"{workers.prefix}:*"):
                await client.delete(key)
        finally:
            await client.aclose()
        await fake.wait_for(
            lambda _: all(len(m.custom_ids()) == 9 for m in messages), timeout=60, what="three grids"
        )
        await world.jobs.wait_idle()
        jobs = await jobs_in(world)
    assert [job.status for job in jobs] == [JobStatus.SUCCEEDED] * 3


async def test_cancel_reaches_a_waiting_and_a_running_remote_job(
    fake_discord: FakeDiscord, tmp_path: Path, workers: Workers
) -> None:
    await workers.start("gpu0", SLOW)
    async with started_bot(fake_discord, remote_config(tmp_path, workers, model=SLOW), None) as world:
        fake = fake_discord
        running = await (await fake.slash("imagine", {"prompt": "running"})).wait_original()
        waiting = await (await fake.slash("imagine", {"prompt": "waiting"})).wait_original()
        await fake.wait_for(lambda _: running.content.endswith("%)"), timeout=15, what="progress")
        await (await fake.slash("cancel")).response(timeout=3)  # the newest: the waiting one
        await fake.wait_for(lambda _: waiting.content.endswith("(cancelled)"), timeout=5, what="cancel")
        await (await fake.slash("cancel")).response(timeout=3)
        await fake.wait_for(lambda _: running.content.endswith("(cancelled)"), timeout=10, what="cancel")
        await world.jobs.wait_idle()
        jobs = await jobs_in(world)
    assert [job.status for job in jobs] == [JobStatus.CANCELLED, JobStatus.CANCELLED]
    assert "run 1: cancelled" in workers.log("gpu0")
    assert workers.log("gpu0").count("run 1:") == 1  # the waiting one never reached the worker


async def test_a_job_cancelled_while_its_worker_is_frozen_ends_cancelled_and_is_not_run_again(
    fake_discord: FakeDiscord, tmp_path: Path, workers: Workers
) -> None:
    frozen = await workers.start("frozen", SLOW)
    async with started_bot(fake_discord, remote_config(tmp_path, workers, model=SLOW), None) as world:
        fake = fake_discord
        message = await (await fake.slash("imagine", {"prompt": "stopped"})).wait_original()
        await fake.wait_for(lambda _: message.content.endswith("%)"), timeout=15, what="progress")
        await workers.start("spare", SLOW)
        frozen.send_signal(signal.SIGSTOP)  # the cancel cannot reach it; its lease lapses
        await (await fake.slash("cancel")).response(timeout=3)
        await fake.wait_for(lambda _: message.content.endswith("(cancelled)"), timeout=15, what="cancel")
        frozen.send_signal(signal.SIGCONT)
        await world.jobs.wait_idle()
        (job,) = await jobs_in(world)
    assert (job.status, job.attempts) == (JobStatus.CANCELLED, 1)
    assert re.search(r" run \d+: ", workers.log("spare")) is None  # the spare never ran it


# --- refusals: one sentence, exit 2 ----------------------------------------------------------------


def test_the_bot_with_an_unreachable_redis_says_so_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, queue_url="redis://127.0.0.1:1/0", model=QUICK)
    assert run_main(config) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("imaginebot: Cannot reach Redis at redis://127.0.0.1:1/0")
    assert err.count("\n") == 1


def test_the_bot_refuses_a_redis_older_than_7_and_exits_2(
    tmp_path: Path, old_redis: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(make_config(tmp_path, queue_url=old_redis, model=QUICK)) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("imaginebot: Redis at redis://127.0.0.1:")
    assert "is version 6.2.14; imaginebot needs Redis 7 or newer" in err
    assert err.count("\n") == 1


def test_a_worker_needs_a_queue_url_and_a_reachable_redis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert worker_main(make_config(tmp_path, model=QUICK)) == EXIT_USAGE
    assert "Set IMAGINE_QUEUE_URL" in capsys.readouterr().err
    unreachable = make_config(tmp_path, model=QUICK, queue_url="redis://127.0.0.1:1/0")
    assert worker_main(unreachable) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("imaginebot worker: Cannot reach Redis")
    assert err.count("\n") == 1


def test_a_queue_url_that_is_not_redis_is_refused_when_the_settings_load() -> None:
    from bot.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"IMAGINE_QUEUE_URL is invalid: .*redis://host:6379/0"):
        load_config(queue_url="http://127.0.0.1:6379")


async def _until(condition: object) -> None:
    async with asyncio.timeout(30):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110 - a file another process writes
            await asyncio.sleep(0.1)
