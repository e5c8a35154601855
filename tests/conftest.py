"""Shared test set-up: every test runs offline, and torch's threads don't spin on a shared CPU.

Redis fixtures for every test folder (`redis_server_url`, `redis7_url`, `redis_prefix`, `old_redis`) come from
`tests/redis_fixtures.py`; PostgreSQL's live with the store tests (`tests/bot/store/conftest.py`).
"""

from __future__ import annotations

import os

from tests.redis_fixtures import old_redis, redis7_url, redis_prefix, redis_server_url

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Read by OpenMP when torch first loads, which is after this file is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["old_redis", "redis7_url", "redis_prefix", "redis_server_url"]
