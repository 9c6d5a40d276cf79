"""Database helpers: per-service metadata with naming conventions, async engines and sessions, shared tables."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import registry
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp stored with its zone, normalised to UTC on the way in (asyncpg reads it back as aware UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        """Normalise to UTC before storing."""
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value


def new_registry() -> registry:
    """A fresh SQLAlchemy registry (and metadata) for one service, so services never share table namespaces."""
    return registry(metadata=MetaData(naming_convention=NAMING_CONVENTION))


def add_platform_tables(metadata: MetaData) -> tuple[Table, Table]:
    """Add the outbox and processed-events tables every service owns to that service's metadata."""
    outbox = Table(
        "outbox", metadata,
        Column("seq", BigInteger, primary_key=True, autoincrement=True),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("topic", String(200), nullable=False),
        Column("key", String(200), nullable=False),
        Column("event_type", String(300), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", UTCDateTime, nullable=False, default=utcnow),
        Column("attempts", Integer, nullable=False, default=0),
        Column("last_error", Text, nullable=True),
    )
    processed = Table(
        "processed_events", metadata,
        Column("consumer", String(120), primary_key=True),
        Column("event_id", String(200), primary_key=True),
        Column("topic", String(200), nullable=False),
        Column("processed_at", UTCDateTime, nullable=False, default=utcnow),
    )
    Index("ix_processed_events_processed_at", processed.c.processed_at)
    return outbox, processed


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error (whichever driver raised it), or None."""
    if not isinstance(exc, DBAPIError):
        return None
    for candidate in (exc.orig, getattr(exc.orig, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if state:
            return state
    return None


def is_unavailable(exc: BaseException) -> bool:
    """Whether a database error means "the database is not there right now" (connection lost, starting, stopping).

    Such errors are the infrastructure's, never the request's or the message's: APIs answer 503 with Retry-After and
    consumers retry the same batch instead of dead-lettering it.
    """
    if isinstance(exc, (OperationalError, InterfaceError, ConnectionError, OSError, TimeoutError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    state = sqlstate(exc) or ""
    return state.startswith(("08", "57P")) or state == "53300"


def async_url(url: str) -> str:
    """Turn a plain PostgreSQL URL into its asyncpg form; refuse any other database."""
    u = make_url(url)
    if u.get_backend_name() != "postgresql":
        raise ValueError(f"the platform runs on PostgreSQL only; {u.drivername!r} URLs are not supported")
    if u.drivername != "postgresql+asyncpg":
        u = u.set(drivername="postgresql+asyncpg")
    return u.render_as_string(hide_password=False)


def create_engine(url: str, *, pool_size: int = 20, echo: bool = False) -> AsyncEngine:
    """An async engine (asyncpg) for a service database."""
    url = async_url(url)
    # No pre-ping (with asyncpg it costs three round trips per checkout): a connection that died with the server is
    # invalidated on first use, that request answers 503 and the pool reconnects; recycling bounds connection age.
    # No overflow: past `pool_size` requests wait for a connection. Overflow connections are opened for a burst and
    # closed on return, and under sustained load that churn (connect, authenticate, re-prepare every statement) ate
    # the CPU the requests needed: at 200 writes/s one registry process fell from keeping up to 5 s queues.
    return create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=0, pool_recycle=1800, pool_timeout=30,
    )


# Execution options for a session's connection when its whole write is one statement: PostgreSQL runs the statement
# as its own transaction, with no BEGIN and COMMIT round trips, and the row locks it takes are released as it ends
# instead of when this process gets round to committing. Pass to `session.connection(execution_options=...)` first
# thing in the transaction; every effect (rows, outbox row, NOTIFY) must then be in that one statement.
ON_ITS_OWN = {"isolation_level": "AUTOCOMMIT"}


def session_factory(engine: AsyncEngine, **info) -> async_sessionmaker[AsyncSession]:
    """A session factory whose sessions carry `info` (the outbox relay's wake-up hook among it)."""
    return async_sessionmaker(engine, expire_on_commit=False, info=info)
