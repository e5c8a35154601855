"""`imaginebot worker [--device cuda:1]`: one GPU's worker for a bot that runs with `IMAGINE_QUEUE_URL`.

It reads the same settings as the bot (`IMAGINE_QUEUE_URL`, `IMAGINE_QUEUE_PREFIX`, `IMAGINE_LEASE_S`,
`IMAGINE_MODEL`, `IMAGINE_MODEL_ALIASES`, …), checks Redis before loading the model (which can take
minutes), then runs jobs until SIGINT/SIGTERM, finishing the job on the device first. No database and
no Discord: the worker only connects out to Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from bot.config import Config
from bot.health import freeze_startup_heap
from bot.services import load_engine, worker_models
from engine.errors import CredentialsRejected, ModelLoadError, QueueUnavailable
from engine.queue import RemoteWorker

__all__ = ["main"]

log = logging.getLogger(__name__)

EXIT_FAILURE = 1
EXIT_USAGE = 2

NO_QUEUE_MESSAGE = (
    "Set IMAGINE_QUEUE_URL to the Redis the bot uses (redis://host:6379/0); a worker takes its jobs "
    "from there, and the bot must have the same IMAGINE_QUEUE_URL and IMAGINE_QUEUE_PREFIX."
)


async def serve(config: Config, *, name: str | None = None, models: list[str] | None = None) -> None:
    """Check Redis, load the model, then run jobs until SIGINT/SIGTERM."""
    assert config.queue_url is not None
    await RemoteWorker.check(config.queue_url)
    log.info("loading model %s on %s …", config.model, config.device)
    backend = await asyncio.to_thread(load_engine, config)
    try:
        worker = RemoteWorker(
            config.queue_url,
            backend,
            models=models or worker_models(config),
            name=name,
            prefix=config.queue_prefix,
            lease_s=config.lease_s,
        )
        freeze_startup_heap()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await worker.run(stop)
    finally:
        await asyncio.to_thread(backend.close)


def main(
    config: Config, *, device: str | None = None, name: str | None = None, models: str | None = None
) -> int:
    """Entry point of `imaginebot worker`; one sentence and exit 2 for a setting to fix, 1 for a model."""
    if config.queue_url is None:
        print(f"imaginebot worker: {NO_QUEUE_MESSAGE}", file=sys.stderr)
        return EXIT_USAGE
    if device is not None:
        config = config.model_copy(update={"device": device})
    listed = [model.strip() for model in models.split(",") if model.strip()] if models else None
    try:
        asyncio.run(serve(config, name=name, models=listed))
    except (QueueUnavailable, CredentialsRejected) as exc:
        print(f"imaginebot worker: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModelLoadError as exc:
        print(f"imaginebot worker: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        pass
    return 0
