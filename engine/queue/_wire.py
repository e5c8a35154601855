"""What crosses Redis between the bot and its workers: key names, the connection check, and jobs,
progress and results as stream fields.

Streams and keys, all under one prefix (`IMAGINE_QUEUE_PREFIX`):

- `<p>:dispatch:<worker>` — one stream per worker, group `workers`: the job the bot gives that worker.
  The entry stays pending (the worker's lease) until the worker acknowledges it; the worker renews
  the lease with `XCLAIM … JUSTID`, the bot's reaper takes back entries idle past the lease.
- `<p>:events` — progress, previews and starts, capped with MAXLEN; read with `XREAD`, losing one is harmless.
- `<p>:results` — one entry per finished run, group `bots`: never trimmed, acknowledged and deleted by the
  bot once it has stored the outcome, so results outlive a restart of the bot.
- `<p>:result:<job>:<attempt>` — a result's images (raw pixels), with an expiry.
- `<p>:worker:<worker>` — a worker's heartbeat: its models and current job, with the lease as expiry.
- `<p>:inflight` — job id → the worker and run it was given to, so a restarted bot finds its jobs again.
- `<p>:cancelled:<job>` and the channel `<p>:cancel` — a cancel for a job a worker may be running.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image

from engine.errors import (
    EngineError,
    GenerationError,
    ImageFlagged,
    JobCancelled,
    OutOfMemoryError,
    PromptRefused,
    QueueUnavailable,
)
from engine.types import GenerationRequest, GenerationResult, Progress

__all__ = [
    "BOTS_GROUP",
    "WORKERS_GROUP",
    "Fields",
    "Keys",
    "connect",
    "error_fields",
    "job_fields",
    "progress_fields",
    "read_error",
    "read_job",
    "read_progress",
    "read_result",
    "result_payload",
    "text",
]

WORKERS_GROUP = "workers"
BOTS_GROUP = "bots"
MIN_REDIS = (7, 0)
"""Redis 6.2's XAUTOCLAIM returns deleted entries as nil (redis #10198, fixed in 7.0)."""

Fields = Mapping[bytes, bytes]
"""A stream entry's fields as redis-py returns them (bytes; images are binary)."""


@dataclass(frozen=True, slots=True)
class Keys:
    """The names of everything one bot and its workers share in Redis."""

    prefix: str

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def results(self) -> str:
        return f"{self.prefix}:results"

    @property
    def inflight(self) -> str:
        return f"{self.prefix}:inflight"

    @property
    def cancel_channel(self) -> str:
        return f"{self.prefix}:cancel"

    @property
    def workers_pattern(self) -> str:
        return f"{self.prefix}:worker:*"

    def dispatch(self, worker: str) -> str:
        return f"{self.prefix}:dispatch:{worker}"

    def worker(self, worker: str) -> str:
        return f"{self.prefix}:worker:{worker}"

    def result(self, job_id: str, attempt: int) -> str:
        return f"{self.prefix}:result:{job_id}:{attempt}"

    def cancelled(self, job_id: str) -> str:
        return f"{self.prefix}:cancelled:{job_id}"


async def connect(url: str, *, socket_timeout: float | None = 10.0) -> Any:
    """A `redis.asyncio.Redis` for `url` that answered, on Redis 7 or newer; else `QueueUnavailable`.

    Blocking reads need a client whose `socket_timeout` is longer than their block (redis-py #2807).
    """
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    shown = _display(url)
    try:
        client = aioredis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=5.0)
    except ValueError as exc:
        raise QueueUnavailable(
            f"IMAGINE_QUEUE_URL is not a Redis URL ({exc}); it looks like redis://host:6379/0."
        ) from None
    try:
        info = await client.info("server")
    except (RedisError, OSError) as exc:
        await client.aclose()
        raise QueueUnavailable(
            f"Cannot reach Redis at {shown} ({exc}); start it, or fix IMAGINE_QUEUE_URL."
        ) from None
    version = str(info.get("redis_version", "0"))
    if _version(version) < MIN_REDIS:
        await client.aclose()
        raise QueueUnavailable(
            f"Redis at {shown} is version {version}; imaginebot needs Redis 7 or newer (its stream "
            "commands are what keeps jobs safe when a worker dies)."
        )
    return client


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _display(url: str) -> str:
    """The URL without its password, fit for a message."""
    split = urlsplit(url)
    if split.password is None:
        return url
    host = split.hostname or ""
    port = f":{split.port}" if split.port else ""
    user = f"{split.username}:***@" if split.username else ":***@"
    return split._replace(netloc=f"{user}{host}{port}").geturl()


def text(fields: Fields, name: str, default: str = "") -> str:
    """A text field of an entry."""
    value = fields.get(name.encode())
    return value.decode() if value is not None else default


# --- jobs ---------------------------------------------------------------------------------------


def job_fields(job_id: str, attempt: int, request: GenerationRequest, init: bytes | None) -> dict[str, Any]:
    """A dispatch entry: the request as JSON and the source image's bytes (the worker may be elsewhere)."""
    fields: dict[str, Any] = {
        "job": job_id,
        "attempt": str(attempt),
        "request": json.dumps(request.to_dict()),
    }
    if init is not None:
        fields["init"] = init
    return fields


def read_job(fields: Fields, workdir: Path) -> tuple[str, int, GenerationRequest]:
    """(job id, attempt, request) of a dispatch entry; its source image is written into `workdir`."""
    job_id, attempt = text(fields, "job"), int(text(fields, "attempt", "1"))
    init_bytes = fields.get(b"init")
    init = None
    if init_bytes is not None:
        init = workdir / f"{job_id}-{attempt}.png"
        init.write_bytes(init_bytes)
    request = GenerationRequest.from_dict(json.loads(text(fields, "request")), init_image=init)
    return job_id, attempt, request


# --- progress -----------------------------------------------------------------------------------


def progress_fields(progress: Progress) -> dict[str, Any]:
    fields: dict[str, Any] = {"step": str(progress.step), "total": str(progress.total)}
    if progress.preview is not None:
        buffer = io.BytesIO()
        progress.preview.convert("RGB").save(buffer, format="PNG", compress_level=1)
        fields["preview"] = buffer.getvalue()
    return fields


def read_progress(fields: Fields) -> Progress:
    raw = fields.get(b"preview")
    preview = None
    if raw is not None:
        with Image.open(io.BytesIO(raw)) as image:
            preview = image.convert("RGB")
    return Progress(
        step=int(text(fields, "step", "0")), total=int(text(fields, "total", "0")), preview=preview
    )


# --- results ------------------------------------------------------------------------------------


def result_payload(result: GenerationResult) -> dict[str, bytes]:
    """A result as a hash: its recipe as JSON and each image's raw RGB pixels (no encoding cost)."""
    images = [image.convert("RGB") for image in result.images]
    meta = {
        "seeds": list(result.seeds),
        "width": result.width,
        "height": result.height,
        "steps": result.steps,
        "cfg": result.cfg,
        "sampler": result.sampler,
        "model": result.model,
        "elapsed_s": result.elapsed_s,
        "extra": dict(result.extra),
        "sizes": [list(image.size) for image in images],
        "flagged": list(result.flagged),
        "checker": result.checker,
    }
    payload = {"meta": json.dumps(meta).encode()}
    for index, image in enumerate(images):
        payload[f"image:{index}"] = image.tobytes()
    return payload


def read_result(payload: Fields) -> GenerationResult:
    meta = json.loads(payload[b"meta"])
    images = tuple(
        Image.frombytes("RGB", (width, height), payload[f"image:{index}".encode()])
        for index, (width, height) in enumerate(meta["sizes"])
    )
    return GenerationResult(
        images=images,
        seeds=tuple(meta["seeds"]),
        width=meta["width"],
        height=meta["height"],
        steps=meta["steps"],
        cfg=meta["cfg"],
        sampler=meta["sampler"],
        model=meta["model"],
        elapsed_s=meta["elapsed_s"],
        extra=dict(meta["extra"]),
        flagged=tuple(bool(flag) for flag in meta.get("flagged", ())),
        checker=meta.get("checker"),
    )


_ERRORS: dict[str, type[EngineError]] = {
    "cancelled": JobCancelled,
    "out_of_memory": OutOfMemoryError,
    "flagged": ImageFlagged,
    "generation": GenerationError,
}
"""Most specific first: `error_fields` names an error by the first class it is an instance of."""


def error_fields(error: EngineError) -> dict[str, str]:
    if isinstance(error, PromptRefused):  # the engine's words travel apart: its owner hears them privately
        return {"error": "refused", "message": str(error), "engine": error.engine, "reason": error.reason}
    kind = next((name for name, cls in _ERRORS.items() if isinstance(error, cls)), "generation")
    return {"error": kind, "message": str(error)}


def read_error(fields: Fields) -> EngineError:
    if text(fields, "error") == "refused":
        return PromptRefused(text(fields, "engine"), text(fields, "reason"))
    return _ERRORS.get(text(fields, "error"), GenerationError)(text(fields, "message"))
