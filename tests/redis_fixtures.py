"""Redis for tests: one server per test session, one key prefix per test, its keys deleted afterwards.

- `redis_server_url`: `IMAGINE_TEST_REDIS_URL` when set (CI sets it; an unreachable one is an error,
  not a skip); otherwise a throwaway `redis-server` from PATH on a free port, keeping nothing on disk,
  stopped at the end; otherwise the test is skipped and says why.
- `redis7_url`: the same server, for tests that need Redis 7 or newer (skipped on an older one).
- `redis_prefix`: a fresh prefix such as `test-1a2b3c4d` (also a valid `IMAGINE_QUEUE_PREFIX`); every key
  `<prefix>:*` is deleted after the test.
- `old_redis`: the URL of a loopback server that speaks just enough of Redis's protocol to say it is Redis 6.2
  (no real Redis 6 is installed here), for the refusal of servers older than 7.

Session fixtures use the synchronous client, so they hold no event loop; tests may use `redis.asyncio`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

__all__ = [
    "REDIS_URL_VARIABLE",
    "delete_keys",
    "find_redis_server",
    "old_redis",
    "redis7_url",
    "redis_prefix",
    "redis_server_url",
    "redis_version",
    "throwaway_redis",
]

REDIS_URL_VARIABLE = "IMAGINE_TEST_REDIS_URL"
_START_TIMEOUT_S = 10.0
_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


def find_redis_server() -> str | None:
    """The `redis-server` binary on PATH (or Debian's /usr/bin), or None."""
    found = shutil.which("redis-server")
    if found:
        return found
    return "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None


def redis_version(url: str) -> tuple[int, ...]:
    """The server's version, e.g. (7, 0, 15)."""
    with redis.Redis.from_url(url) as client:
        info = client.info("server")
    return tuple(int(part) for part in str(info["redis_version"]).split(".") if part.isdigit())


def delete_keys(url: str, prefix: str) -> int:
    """Delete every key `<prefix>:*` (SCAN, so a shared server is never blocked); how many went."""
    pattern = _GLOB_SPECIAL.sub(r"\\\1", prefix) + ":*"
    deleted = 0
    with redis.Redis.from_url(url) as client:
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) == 1000:
                deleted += int(client.delete(*batch))
                batch.clear()
        if batch:
            deleted += int(client.delete(*batch))
    return deleted


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_up(process: subprocess.Popen[bytes], url: str, log: Path) -> bool:
    """True once the server answers PING; False if it exited (its port was taken meanwhile)."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    with redis.Redis.from_url(url, socket_connect_timeout=0.5) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                if client.ping():
                    return True
            except redis.ConnectionError:
                time.sleep(0.05)
    raise RuntimeError(
        f"redis-server did not answer within {_START_TIMEOUT_S:.0f} s; its log:\n{log.read_text()}"
    )


@contextmanager
def throwaway_redis(binary: str) -> Iterator[str]:
    """Run a private `redis-server` on 127.0.0.1 that writes nothing to disk; yield its URL, then stop it."""
    folder = Path(tempfile.mkdtemp(prefix="imaginebot-redis-"))
    log = folder / "redis.log"
    try:
        for _attempt in range(3):  # another process may take the free port before the server binds it
            port = _free_port()
            command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
            # No RDB snapshots, no append-only file: nothing is written but the log.
            command += ["--save", "", "--appendonly", "no", "--logfile", str(log)]
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            url = f"redis://127.0.0.1:{port}/0"
            try:
                if _wait_until_up(process, url, log):
                    yield url
                    return
            finally:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        raise RuntimeError(f"redis-server exited at start three times; its log:\n{log.read_text()}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """The URL of a Redis server for this test session (see the module's docstring)."""
    given = os.environ.get(REDIS_URL_VARIABLE)
    if given:
        try:
            redis_version(given)
        except redis.RedisError as exc:
            raise RuntimeError(
                f"{REDIS_URL_VARIABLE}={given} is set, but that Redis does not answer: {exc}"
            ) from exc
        yield given
        return
    binary = find_redis_server()
    if binary is None:
        pytest.skip(f"Redis is not installed (no redis-server on PATH) and {REDIS_URL_VARIABLE} is not set")
    with throwaway_redis(binary) as url:
        yield url


@pytest.fixture(scope="session")
def redis7_url(redis_server_url: str) -> str:
    """`redis_server_url`, checked to be Redis 7 or newer (the queue's stream commands need it)."""
    version = redis_version(redis_server_url)
    if version < (7,):
        pytest.skip(f"needs Redis 7 or newer; the server is {'.'.join(map(str, version))}")
    return redis_server_url


@pytest.fixture
def redis_prefix(redis_server_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key `<prefix>:*` is deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    try:
        yield prefix
    finally:
        delete_keys(redis_server_url, prefix)


@pytest.fixture
def old_redis() -> Iterator[str]:
    """A loopback server that speaks enough of Redis's protocol to say it is Redis 6.2. It runs on its
    own thread, so both a test's event loop and a program's `asyncio.run` can talk to it."""
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _OldRedis) as server:
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"redis://127.0.0.1:{server.server_address[1]}/0"
        finally:
            server.shutdown()


class _OldRedis(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        with contextlib.suppress(ConnectionError, ValueError):
            while command := self._command():
                if command[0].upper() == b"INFO":
                    info = b"# Server\r\nredis_version:6.2.14\r\n"
                    self.wfile.write(b"$%d\r\n%s\r\n" % (len(info), info))
                else:
                    self.wfile.write(b"+OK\r\n")

    def _command(self) -> list[bytes]:
        header = self.rfile.readline()
        if not header.startswith(b"*"):
            return []
        parts = []
        for _ in range(int(header[1:])):
            length = int(self.rfile.readline()[1:])
            parts.append(self.rfile.read(length + 2)[:-2])
        return parts
