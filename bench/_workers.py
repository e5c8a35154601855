"""`imaginebot worker` subprocesses for the benchmarks, on a simulated GPU, all on one key prefix."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import tempfile
from pathlib import Path
from types import TracebackType

import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]


class WorkerPool:
    """Use as `async with WorkerPool(url, model, count) as pool:`; `pool.prefix` is the key prefix."""

    def __init__(
        self, url: str, model: str, count: int, *, lease_s: float = 5.0, prefix: str | None = None
    ) -> None:
        self.url = url
        self.model = model
        self.count = count
        self.lease_s = lease_s
        self.prefix = prefix or f"bench-{secrets.token_hex(4)}"
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self._logs = tempfile.TemporaryDirectory(prefix="imaginebot-bench-")

    async def __aenter__(self) -> WorkerPool:
        for n in range(self.count):
            await self.start(f"gpu{n}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        client = aioredis.Redis.from_url(self.url)
        try:
            async for key in client.scan_iter(match=f"{self.prefix}:*"):
                await client.delete(key)
        finally:
            await client.aclose()
        self._logs.cleanup()

    async def start(self, name: str) -> asyncio.subprocess.Process:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "IMAGINE_QUEUE_URL": self.url,
            "IMAGINE_QUEUE_PREFIX": self.prefix,
            "IMAGINE_LEASE_S": str(self.lease_s),
            "IMAGINE_MODEL": self.model,
            "IMAGINE_LOG_LEVEL": "WARNING",
        }
        log = (Path(self._logs.name) / f"{name}.log").open("ab")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "worker",
            "--name",
            name,
            env=env,
            cwd=self._logs.name,
            stderr=log,
        )
        log.close()
        self.procs[name] = proc
        client = aioredis.Redis.from_url(self.url)
        try:
            async with asyncio.timeout(60):
                while not await client.exists(f"{self.prefix}:worker:{name}"):
                    if proc.returncode is not None:
                        raise RuntimeError(f"worker {name} exited: {self.log(name)}")
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        return proc

    def log(self, name: str) -> str:
        return (Path(self._logs.name) / f"{name}.log").read_text()
