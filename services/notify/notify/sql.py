"""Bulk statements notify needs: inserts and versioned upserts of many rows in one statement."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session


@lru_cache(maxsize=64)
def _from_arrays(table: Table, columns: tuple[str, ...]):
    """INSERT ... SELECT FROM unnest(one array per column), many rows in one statement and parameter set
    (cheaper for the server and for SQLAlchemy than an executemany of one parameter set per row)."""
    arrays = [bindparam(c, type_=ARRAY(table.c[c].type)) for c in columns]
    u = func.unnest(*arrays).table_valued(*columns).render_derived(name="u")
    return postgresql.insert(table).from_select(list(columns), select(*[u.c[c] for c in columns]))


def _as_arrays(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> dict[str, list[Any]]:
    return {c: [r[c] for r in rows] for c in columns}


def insert_ignore_sync(session: Session, table: Table, rows: list[dict[str, Any]], *, chunk: int = 5000) -> None:
    """Insert many rows (all with the same keys), silently skipping those that break a unique constraint."""
    if not rows:
        return
    columns = tuple(rows[0])
    for i in range(0, len(rows), chunk):
        part = rows[i:i + chunk]
        session.execute(_from_arrays(table, columns).on_conflict_do_nothing(), _as_arrays(part, columns))


async def insert_ignore(session: AsyncSession, table: Table, rows: list[dict[str, Any]], *, chunk: int = 5000) -> None:
    """Insert many rows (all with the same keys), silently skipping those that break a unique constraint."""
    if rows:
        await session.run_sync(insert_ignore_sync, table, rows, chunk=chunk)


async def insert_ignore_returning(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> list[str]:
    """Insert rows skipping duplicates; returns the ids of those actually inserted."""
    out: list[str] = []
    for row in rows:
        res = await session.execute(postgresql.insert(table).values(**row).on_conflict_do_nothing()
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


@lru_cache(maxsize=64)
def _upsert(table: Table, key: tuple[str, ...], columns: tuple[str, ...]):
    """One versioned upsert statement per table and column set, built once (its compiled form is cached too)."""
    # From arrays: keys are unique within a batch (defer_upsert keeps the newest), as ON CONFLICT needs
    ins = _from_arrays(table, columns)
    return ins.on_conflict_do_update(
        index_elements=list(key), set_={c: ins.excluded[c] for c in columns if c not in key},
        where=table.c.version <= ins.excluded.version,
    )


def _upsert_batches(pending: dict) -> list[tuple[Any, Any]]:
    """(statement, parameters) pairs: one cached statement per table and column set."""
    groups: dict[tuple, list] = {}
    for table, key, row in pending.values():
        groups.setdefault((table.name, tuple(key), tuple(row)), []).append((table, row))
    out = []
    for (_, key, columns), entries in groups.items():
        rows = [r for _, r in entries]
        out.append((_upsert(entries[0][0], key, columns), _as_arrays(rows, columns)))
    return out


def run_pending_upserts(session: Session) -> None:
    """Run the queued upserts now, on the sync session (inside the async session's greenlet)."""
    pending = session.info.pop(PENDING_UPSERTS, None)
    if pending:
        for stmt, rows in _upsert_batches(pending):
            session.execute(stmt, rows)


async def flush_upserts(session: AsyncSession) -> None:
    """Run the queued upserts now (before reading a projection in the same transaction)."""
    if session.info.get(PENDING_UPSERTS):
        await session.run_sync(run_pending_upserts)


@sa_event.listens_for(Session, "before_commit")
def _run_pending_upserts(session: Session) -> None:
    run_pending_upserts(session)  # a sync call inside the async session's greenlet, as SQLAlchemy allows


@sa_event.listens_for(Session, "after_rollback")
def _forget_pending_upserts(session: Session) -> None:
    session.info.pop(PENDING_UPSERTS, None)
