"""The Redis test fixtures: keys under a test's prefix go, nothing else does; the throwaway server."""

from __future__ import annotations

import re

import pytest
import redis
import redis.asyncio

from tests.redis_fixtures import delete_keys, find_redis_server, redis_version, throwaway_redis

QUEUE_PREFIX_PATTERN = r"^[A-Za-z0-9_.-]{1,40}$"  # bot.config's queue_prefix


def test_delete_keys_removes_every_key_under_the_prefix_and_nothing_else(
    redis_server_url: str, redis_prefix: str
) -> None:
    neighbours = [f"{redis_prefix}x:a", f"{redis_prefix}-b:a", redis_prefix]
    with redis.Redis.from_url(redis_server_url) as client:
        try:
            # More keys than one SCAN/DEL batch, and a stream and a hash like the queue's.
            client.mset({f"{redis_prefix}:k{i}": i for i in range(2500)})
            client.xadd(f"{redis_prefix}:stream", {"job": "1"})
            client.hset(f"{redis_prefix}:lease:1", mapping={"worker": "w"})
            client.mset(dict.fromkeys(neighbours, 1))

            deleted = delete_keys(redis_server_url, redis_prefix)

            assert deleted == 2502
            assert list(client.scan_iter(match=f"{redis_prefix}:*")) == []
            assert client.exists(*neighbours) == len(neighbours)
        finally:
            client.delete(*neighbours)


def test_glob_characters_in_a_prefix_match_only_themselves(redis_server_url: str, redis_prefix: str) -> None:
    with redis.Redis.from_url(redis_server_url) as client:
        client.set(f"{redis_prefix}:a", 1)
        client.set(f"{redis_prefix}-[x]:a", 1)

        delete_keys(redis_server_url, f"{redis_prefix}-[x]")

        assert client.exists(f"{redis_prefix}:a", f"{redis_prefix}-[x]:a") == 1


async def test_prefix_is_a_valid_queue_prefix_and_the_async_client_works(
    redis7_url: str, redis_prefix: str
) -> None:
    assert re.fullmatch(QUEUE_PREFIX_PATTERN, redis_prefix)
    client = redis.asyncio.Redis.from_url(redis7_url)
    try:
        await client.xadd(f"{redis_prefix}:stream", {"job": "1"})
        assert await client.xlen(f"{redis_prefix}:stream") == 1
    finally:
        await client.aclose()


def test_throwaway_server_keeps_nothing_on_disk_and_stops() -> None:
    binary = find_redis_server()
    if binary is None:
        pytest.skip("Redis is not installed (no redis-server on PATH)")

    with throwaway_redis(binary) as url, redis.Redis.from_url(url, decode_responses=True) as client:
        config = {**client.config_get("save"), **client.config_get("appendonly")}
        assert redis_version(url) >= (6,)

    assert config == {"save": "", "appendonly": "no"}
    with pytest.raises(redis.ConnectionError), redis.Redis.from_url(url, socket_connect_timeout=1) as client:
        client.ping()
