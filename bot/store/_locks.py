"""Locks that make the store's read-then-write steps safe when two transactions run them at once.

PostgreSQL (read committed) lets two transactions read the same rows before either writes, so both can
pass a check or miss a row the other is inserting; `serialize` makes the second wait for the first.
SQLite and PostgreSQL are the databases the bot supports; on any other, `serialize` does nothing.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import BigInteger, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["serialize"]


def _lock_id(namespace: str, key: int) -> int:
    """A stable signed 64-bit number for (namespace, key), as PostgreSQL's advisory locks take."""
    digest = hashlib.blake2b(f"{namespace}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def serialize(session: AsyncSession, namespace: str, key: int) -> None:
    """Hold (namespace, key) until this transaction ends, waiting while another transaction holds it.

    Call it before the reads a write depends on. Take several keys in one transaction in a fixed order,
    or two transactions may each wait for the other (PostgreSQL then fails one with a deadlock error).
    """
    connection = await session.connection()
    # SQLite needs nothing: every write transaction takes the database's write lock at BEGIN (bot.store.db).
    if connection.dialect.name != "postgresql":
        return
    await connection.execute(
        select(func.pg_advisory_xact_lock(literal(_lock_id(namespace, key), BigInteger)))
    )
