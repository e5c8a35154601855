"""Alembic migration history for the bot's database; `bot.store.migrate` applies it.

New revision: `alembic -c migrations/alembic.ini revision --autogenerate --rev-id 0002 -m "what changed"`
(uses DATABASE_URL, or the SQLite file in IMAGINE_DATA_DIR), then review the file it writes.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ALEMBIC_INI", "MIGRATIONS_DIR"]

MIGRATIONS_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = MIGRATIONS_DIR / "alembic.ini"
