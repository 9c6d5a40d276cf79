"""Dialect-aware bulk statements notify needs on PostgreSQL (and SQLite in development)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session


def _insert(session: AsyncSession, table: Table):
    name = session.bind.dialect.name if session.bind is not None else "postgresql"
    return (postgresql.insert if name == "postgresql" else sqlite.insert)(table)


async def insert_ignore(session: AsyncSession, table: Table, rows: list[dict[str, Any]], *, chunk: int = 2000) -> None:
    """Insert many rows, silently skipping those that break a unique constraint (at-most-once fan-out)."""
    for i in range(0, len(rows), chunk):
        await session.execute(_insert(session, table).on_conflict_do_nothing(), rows[i:i + chunk])


async def insert_ignore_returning(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> list[str]:
    """Insert rows skipping duplicates; returns the ids of those actually inserted."""
    out: list[str] = []
    for row in rows:
        res = await session.execute(_insert(session, table).values(**row).on_conflict_do_nothing()
                                    .returning(table.c.id))
        got = res.scalar_one_or_none()
        if got is not None:
            out.append(got)
    return out


# --- projection upserts deferred to commit, so a consumer batch writes them in one statement per table -------------

PENDING_UPSERTS = "notify_pending_upserts"


def defer_upsert(session: AsyncSession, table: Table, row: dict[str, Any], *, key: list[str]) -> None:
    """Queue a versioned upsert to run at commit (or at the next flush_upserts); the newest version per key wins."""
    pending = session.info.setdefault(PENDING_UPSERTS, {})
    k = (table.name, tuple(row[c] for c in key))
    old = pending.get(k)
    if old is None or row["version"] >= old[2]["version"]:
        pending[k] = (table, key, row)


def _upsert_statements(dialect: str, pending: dict) -> list:
    by_table: dict[str, list] = {}
    for table, key, row in pending.values():
        by_table.setdefault(table.name, []).append((table, key, row))
    out = []
    for entries in by_table.values():
        table, key = entries[0][0], entries[0][1]
        rows = [e[2] for e in entries]
        for i in range(0, len(rows), 1000):
            ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).values(rows[i:i + 1000])
            out.append(ins.on_conflict_do_update(
                index_elements=key, set_={c: ins.excluded[c] for c in rows[0] if c not in key},
                where=table.c.version <= ins.excluded.version,
            ))
    return out


async def flush_upserts(session: AsyncSession) -> None:
    """Run the queued upserts now (before reading a projection in the same transaction)."""
    pending = session.info.pop(PENDING_UPSERTS, None)
    if pending:
        for stmt in _upsert_statements(session.bind.dialect.name, pending):
            await session.execute(stmt)


@sa_event.listens_for(Session, "before_commit")
def _run_pending_upserts(session: Session) -> None:
    pending = session.info.pop(PENDING_UPSERTS, None)
    if pending:
        for stmt in _upsert_statements(session.bind.dialect.name, pending):
            session.execute(stmt)  # a sync call inside the async session's greenlet, as SQLAlchemy allows


@sa_event.listens_for(Session, "after_rollback")
def _forget_pending_upserts(session: Session) -> None:
    session.info.pop(PENDING_UPSERTS, None)
