"""Fixtures: a migrated SQLite file per test (the real schema, not `create_all`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import Database
from bot.store.migrate import upgrade


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    # A subfolder that does not exist yet: connecting must create it.
    return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'bot.db'}"


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    await upgrade(db_url)
    database = await Database.connect(db_url)
    try:
        yield database
    finally:
        await database.close()
