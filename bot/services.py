"""The composition root: config → database (migrated) → engine backend → queue → job service.

`imaginebot run`, `imaginebot imagine`, the tests and the benchmarks all build the bot's services
with `async with open_services(config) as services:`, and hand them on; nothing is created at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bot.config import Config
from bot.jobs import JobService
from bot.store.db import Database
from bot.store.migrate import upgrade
from bot.store.queries import MAX_ATTEMPTS
from bot.web import GalleryKeys
from engine.backend import Backend, Capabilities
from engine.errors import ModelLoadError
from engine.queue import JobQueue, LocalQueue, RemoteQueue
from engine.types import GenerationRequest

__all__ = ["Services", "capabilities_of", "load_engine", "model_of", "open_services", "worker_models"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Services:
    """What the bot and the command line run on, built once."""

    config: Config
    db: Database
    queue: JobQueue
    jobs: JobService
    gallery_keys: GalleryKeys
    """Sign `/gallery` links and check the sessions they open (`IMAGINE_WEB_SECRET` or the data dir's)."""
    safety_checker: str | None = None
    """The name of the safety checker the model's images go through here; None when there is none, or
    when jobs run on remote workers (each worker's `IMAGINE_SAFETY_CHECKER` decides there)."""


def load_engine(config: Config) -> Backend:
    """Load the configured model (slow, synchronous: call it in a thread)."""
    from engine.backends import load_backend
    from engine.backends.hosted import HostedSettings

    key = config.openai_api_key
    hosted = HostedSettings(
        api_key=key.get_secret_value() if key is not None else None,
        base_url=config.openai_base_url,
        timeout_s=config.hosted_timeout_s,
        retries=config.hosted_retries,
    )
    return load_backend(
        config.model,
        device=config.device,
        aliases=config.model_aliases,
        diffusion_upscale=config.diffusion_upscale,
        safety_checker=config.safety_checker,
        hosted=hosted,
    )


@contextlib.asynccontextmanager
async def open_services(
    config: Config, *, backend: Backend | None = None, grace_s: float = 10.0
) -> AsyncIterator[Services]:
    """Build the services in order, each only once the one before it works; close them in reverse.

    With `IMAGINE_QUEUE_URL` the jobs run on `imaginebot worker` processes through Redis and the bot
    loads no model; otherwise on `backend`, or the configured model loaded here (closed on exit too).
    On exit, running jobs get `grace_s` seconds to finish; jobs still waiting or running then stay
    `queued`/`running` in the database, and the next start resumes them (a remote worker's result
    waits in Redis meanwhile).
    """
    await asyncio.to_thread(config.data_dir.mkdir, parents=True, exist_ok=True)
    keys = await asyncio.to_thread(GalleryKeys.load, config)
    await upgrade(config.database_url)
    async with (
        await Database.connect(config.database_url) as db,
        _engine(config, backend) as (queue, checker, default),
    ):
        # Remote workers' checks are unknown here: unless the bot's own setting says none, take it they check.
        checked = checker is not None or (config.queue_url is not None and config.safety_checker != "none")
        jobs = JobService(
            db=db,
            queue=queue,
            config=config,
            safety_checked=checked,
            capabilities=functools.partial(capabilities_of, config, default),
        )
        try:
            yield Services(
                config=config, db=db, queue=queue, jobs=jobs, gallery_keys=keys, safety_checker=checker
            )
        finally:
            await queue.close(grace_s=grace_s)
            await jobs.close()


def capabilities_of(config: Config, default: Capabilities, alias: str | None) -> Capabilities:
    """What the model of a job's alias honours: `default` for the default model, else its engine's
    word by the model's name (nothing is loaded)."""
    from engine.backends import capabilities

    model = model_of(config, GenerationRequest(prompt="", model=alias))
    if model == config.model:
        return default
    try:
        return capabilities(model)
    except ModelLoadError as exc:  # an alias no engine here serves (removed since): its job fails anyway
        log.warning("no engine for the model %r of alias %r: %s", model, alias, exc)
        return Capabilities(model, edits=False, image_prompts=False)


@contextlib.asynccontextmanager
async def _engine(
    config: Config, backend: Backend | None
) -> AsyncIterator[tuple[JobQueue, str | None, Capabilities]]:
    """The started queue, on remote workers or on a backend in this process; the name of the
    backend's safety checker (None for remote workers: the bot runs no model); and what the default
    model honours (asked of its engine by name for remote workers, which may run any engine)."""
    if config.queue_url is not None:
        remote = RemoteQueue(
            config.queue_url,
            model_of=functools.partial(model_of, config),
            prefix=config.queue_prefix,
            lease_s=config.lease_s,
            max_attempts=MAX_ATTEMPTS,
            max_running_per_owner=config.max_running_per_owner,
            max_waiting_per_owner=config.max_waiting_per_owner,
        )
        from engine.backends import capabilities

        default = capabilities(config.model)  # a bad IMAGINE_MODEL stops the bot here, not a worker
        await remote.start()
        yield remote, None, default
        return
    if backend is None:
        log.info("loading model %s …", config.model)
        backend = await asyncio.to_thread(load_engine, config)
    try:
        local = LocalQueue(
            [backend],
            max_running_per_owner=config.max_running_per_owner,
            max_waiting_per_owner=config.max_waiting_per_owner,
        )
        await local.start()
        yield local, backend.checker, backend.capabilities
    finally:
        await asyncio.to_thread(backend.close)


def model_of(config: Config, request: GenerationRequest) -> str:
    """The model a job runs on, by the name workers know it by: the alias's model, or the default."""
    if request.model is None:
        return config.model
    return config.model_aliases.get(request.model, request.model)


def worker_models(config: Config) -> list[str]:
    """What a worker started with `config` can run: the default model and every alias's model."""
    return list(dict.fromkeys([config.model, *config.model_aliases.values()]))
