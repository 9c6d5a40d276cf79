"""Transactional outbox: stage events in the same transaction as the row change; a relay publishes them.

The relay wakes as soon as a session that staged events commits (no polling delay on the happy path), sweeps every
`sweep_seconds` for anything left behind (a crash between commit and publish, a broker outage), publishes with an
idempotent producer (acks=all) in sequence order, and rows leave the outbox only once the broker acknowledged them
(on PostgreSQL a batch is deleted as it is taken, in a transaction committed after the acknowledgement). On PostgreSQL
a transaction-scoped advisory lock makes one relay at a time publish, so several processes keep order per key.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
)
from pydantic import BaseModel
from sqlalchemy import Table, bindparam, func, insert, select
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable

from common import tracing
from common.db import utcnow
from common.errors import PayloadTooLarge
from common.events import CONTENT_TYPE, CloudEvent, EventContract, new_event
from common.kafka import KafkaSecurity
from common.limits import MAX_EVENT_BYTES, MAX_RECORD_BYTES
from common.metrics import EVENTS_PUBLISH_FAILED, EVENTS_PUBLISHED, OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE

log = logging.getLogger("common.outbox")

PENDING = "outbox_pending"
# The last_error prefix of rows the broker can never accept (too large): kept in the outbox, passed by the relay.
UNPUBLISHABLE = "unpublishable: "
WAKE = "outbox_wake"


def notify_channel(service: str) -> str:
    """The PostgreSQL NOTIFY channel that wakes a service's relays in other processes (API and worker apart)."""
    return f"outbox_{service}"


@sa_event.listens_for(Session, "after_commit")
def _wake_relay_after_commit(session: Session) -> None:
    if session.info.pop(PENDING, False):
        wake = session.info.get(WAKE)
        if wake is not None:
            wake()


@sa_event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(PENDING, None)


_ROW = ("event_id", "topic", "key", "event_type", "payload", "created_at", "attempts")
_TAKEN = ("seq", *_ROW)  # the columns the PostgreSQL relay takes (and puts back on failure, see _put_back_sql)
_KEPT = tuple(c for c in _TAKEN if c != "attempts")  # put back as they were; attempts counted, last_error set
# The relay's transaction, begun in the same round trip as a planner setting for it: the next batch is read in seq order
# from the primary key. A sequential scan (which the planner picks whenever its statistics say the table is small)
# reads every row deleted since the last vacuum, on each batch: at 500 events/s, milliseconds per batch within a minute.
_BEGIN_TAKING = "BEGIN; SET LOCAL enable_seqscan = off"


@dataclass(frozen=True)
class EventStager:
    """Stages a service's events into its outbox table; knows the service's CloudEvents source and type prefix."""

    table: Table
    source: str
    type_prefix: str
    service: str = ""

    @cached_property
    def _insert(self) -> Executable:
        # Built once: a constant statement keeps its compiled form and cache key, the hot path only binds values.
        return insert(self.table).values({c: bindparam(c) for c in _ROW})

    @cached_property
    def _insert_and_notify(self) -> Executable:
        # The first event of a transaction also queues a NOTIFY in the same round trip; PostgreSQL delivers it at
        # commit (never on rollback) to relays listening in other processes.
        added = self._insert.returning(self.table.c.seq).cte("added")
        return select(func.pg_notify(notify_channel(self.service), "")).select_from(added)

    def event_row(
        self, contract: EventContract, *, key: str, payload: BaseModel, event_id: str | None = None,
    ) -> tuple[CloudEvent, dict[str, Any]]:
        """The event and its outbox row, for a use case that inserts the row in its own statement (see `staged`)."""
        ev = new_event(
            contract=contract, payload=payload, source=self.source, type_prefix=self.type_prefix, subject=key,
            event_id=event_id,
        )
        data = ev.to_bytes()
        size = len(data) + len(key.encode())
        if size > MAX_EVENT_BYTES:  # refused now (the caller's transaction rolls back), never stuck in the relay
            raise PayloadTooLarge(
                f"this change would publish a {size:,}-byte {ev.type} event on {contract.topic}; events are limited "
                f"to {MAX_EVENT_BYTES:,} bytes (the platform's Kafka record limit): make the change in smaller parts")
        return ev, {"event_id": ev.id, "topic": contract.topic, "key": key, "event_type": ev.type,
                    "payload": data, "created_at": utcnow(), "attempts": 0}

    @property
    def channel(self) -> str:
        """The NOTIFY channel this service's relays LISTEN on."""
        return notify_channel(self.service)

    def staged(self, session: AsyncSession) -> None:
        """Record that the session's transaction holds outbox rows: the in-process relay wakes when it commits."""
        session.info[PENDING] = True

    async def stage(
        self, session: AsyncSession, contract: EventContract, *, key: str, payload: BaseModel,
        event_id: str | None = None,
    ) -> CloudEvent:
        """Add an event to the outbox in the session's current transaction; it is published only if that commits."""
        ev, row = self.event_row(contract, key=key, payload=payload, event_id=event_id)
        notify = not session.info.get(PENDING) and self.service
        await session.execute(self._insert_and_notify if notify else self._insert, row)
        self.staged(session)
        return ev


# Errors after which an idempotent producer never sends again: its sequence numbers went out of step with the broker's
# (typically once the broker restarted while batches were in flight). The Java client bumps its epoch and carries on;
# aiokafka cannot (aio-libs/aiokafka#1017), so the service replaces the producer with a fresh one (a new producer id).
# Whatever was in doubt stays in the outbox and is sent again; consumers drop the duplicates by event id.
PRODUCER_FATAL = (OutOfOrderSequenceNumber, InvalidProducerEpoch, InvalidProducerIdMapping, ProducerFenced)


def _failed(exc: BaseException) -> asyncio.Future:
    """A future already failed with `exc` (a send the client refused before it reached the broker)."""
    future = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


def producer_is_broken(exc: BaseException | None) -> bool:
    """Whether an error (or its cause) means the producer must be replaced."""
    while exc is not None:
        if isinstance(exc, PRODUCER_FATAL):
            return True
        exc = exc.__cause__
    return False


class PublishFailed(RuntimeError):
    """Some outbox rows were not acknowledged by the broker; they stay in the outbox for the next round."""


def producer_for(bootstrap: str, *, client_id: str, security: KafkaSecurity) -> AIOKafkaProducer:
    """An idempotent producer (acks=all) tuned for low latency, authenticated as `security` says, taking records up
    to the platform's record limit."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, client_id=client_id, enable_idempotence=True, acks="all",
        linger_ms=1, request_timeout_ms=15000, max_batch_size=262144, retry_backoff_ms=200,
        **security.client_kwargs(),
        max_request_size=MAX_RECORD_BYTES,
    )


class OutboxRelay:
    """Publishes outbox rows in order, wakes on commit, sweeps periodically, never deletes before the broker acks."""

    def __init__(
        self, *, engine: AsyncEngine, table: Table, producer: AIOKafkaProducer, service: str,
        sweep_seconds: float = 1.0, batch_size: int = 500,
        renew_producer: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.engine = engine
        self.table = table
        self.producer = producer
        self.service = service
        self.sweep_seconds = sweep_seconds
        self.batch_size = batch_size
        self._wake = asyncio.Event()
        self.linger_seconds = 0.002
        self._stopping = False
        self._lock_key = zlib.crc32(f"outbox:{service}".encode()) & 0x7FFFFFFF
        self._last_gauge = 0.0
        self.renew_producer = renew_producer  # replaces `producer` when the broker stops accepting it

    def wake(self) -> None:
        """Ask the relay to publish now (called after a commit that staged events)."""
        self._wake.set()

    def stop(self) -> None:
        """Ask the loop to finish after the current batch."""
        self._stopping = True
        self._wake.set()

    async def _listen(self):
        """LISTEN for commits made by other processes of this service; None on failure."""
        try:
            conn = await self.engine.connect()
            raw = await conn.get_raw_connection()
            await raw.driver_connection.add_listener(notify_channel(self.service), lambda *_: self._wake.set())
            return conn
        except Exception as exc:  # the periodic sweep still publishes everything, only later
            log.warning("outbox relay: cannot LISTEN (%r); relying on the sweep", exc)
            return None

    async def run(self) -> None:
        """Loop until stopped: publish everything pending, then sleep until woken or the sweep interval passes."""
        listener = await self._listen()
        try:
            await self._run()
        finally:
            if listener is not None:
                await listener.close()

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            self._wake.clear()
            try:
                sent = await self.publish_pending()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database unavailable: keep the rows, try again later
                failures += 1
                log.warning("outbox relay: publish failed, will retry", extra={"error": repr(exc)})
                if self.renew_producer is not None and producer_is_broken(exc):
                    await self._renew()
                await asyncio.sleep(min(5.0, 0.2 * 2 ** min(failures, 5)))
                continue
            if sent >= self.batch_size:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.sweep_seconds)
                await asyncio.sleep(self.linger_seconds)  # let concurrent commits join the same batch
            except TimeoutError:
                pass

    async def _renew(self) -> None:
        try:
            await self.renew_producer()
            log.warning("outbox relay: the producer was out of step with the broker; replaced it with a new one")
        except Exception as exc:  # the broker may be away again; the next failure tries again
            log.warning("outbox relay: replacing the producer failed", extra={"error": repr(exc)})

    async def publish_pending(self) -> int:
        """Publish up to one batch per call, repeating while full batches come back; returns how many were sent."""
        total = 0
        while True:
            sent, fetched = await self._publish_batch()
            total += sent
            if fetched < self.batch_size or sent < fetched:
                break
        await self._update_gauges()
        return total

    async def _publish_batch(self) -> tuple[int, int]:
        """In three round trips on the driver's own connection: BEGIN; take the next batch (deleting it,
        under the advisory lock, in one statement); COMMIT once the broker acknowledged it. Rows the broker refused
        are put back in the same transaction, with the attempt counted; a crash before COMMIT leaves every row."""
        async with self._autocommit.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection  # asyncpg.Connection
            try:
                await raw.execute(_BEGIN_TAKING)
                rows = await raw.fetch(self._take_sql, self._lock_key, self.batch_size)
                if not rows:
                    await raw.execute("COMMIT")
                    return 0, 0
                rows.sort(key=lambda r: r["seq"])
                done, first_error, refused = await self._send(rows)
                failed = [r for r in rows if r["seq"] not in done and r["seq"] not in refused]
                if failed:
                    await raw.executemany(self._put_back_sql, [
                        (*(r[c] for c in _KEPT), r["attempts"] + 1, repr(first_error)[:2000]) for r in failed])
                if refused:  # kept, set aside: the next batches pass them by (see _take_sql)
                    await raw.executemany(self._put_back_sql, [
                        (*(r[c] for c in _KEPT), r["attempts"] + 1, f"{UNPUBLISHABLE}{refused[r['seq']]!r}"[:2000])
                        for r in rows if r["seq"] in refused])
                await raw.execute("COMMIT")
            except BaseException:
                await conn.invalidate()  # closed, which rolls back: never back in the pool inside a transaction
                raise
        for r in rows:
            if r["seq"] in refused:
                log.error("outbox relay: event %s (%s on %s) is larger than the broker accepts; kept in the outbox "
                          "and passed by (last_error starts with %r): %r", r["event_id"], r["event_type"],
                          r["topic"], UNPUBLISHABLE, refused[r["seq"]])
        if failed:
            raise PublishFailed(f"{len(failed)} outbox events not acknowledged: {first_error!r}") from first_error
        return len(done) + len(refused), len(rows)

    @cached_property
    def _autocommit(self) -> AsyncEngine:
        return self.engine.execution_options(isolation_level="AUTOCOMMIT")  # transactions are the driver's own

    @cached_property
    def _take_sql(self) -> str:
        # The uncorrelated subquery runs once: when another relay holds the lock, no row is taken.
        # Rows set aside as unpublishable stay in the table (nothing is lost) but are passed by.
        return (f"DELETE FROM {self.table.name} WHERE seq IN (SELECT seq FROM {self.table.name} "  # noqa: S608
                "WHERE (SELECT pg_try_advisory_xact_lock($1)) "
                f"AND (last_error IS NULL OR left(last_error, {len(UNPUBLISHABLE)}) <> '{UNPUBLISHABLE}') "
                "ORDER BY seq LIMIT $2) RETURNING " + ", ".join(_TAKEN))

    @cached_property
    def _put_back_sql(self) -> str:
        columns = (*_KEPT, "attempts", "last_error")
        return (f"INSERT INTO {self.table.name} ({', '.join(columns)}) "  # noqa: S608
                f"VALUES ({', '.join(f'${i + 1}' for i in range(len(columns)))})")

    async def _send(self, rows) -> tuple[set[int], BaseException | None, dict[int, BaseException]]:
        """Send rows in order and wait for the broker; returns the seqs it acknowledged, the first error, and the rows
        refused for good (too large for any broker of ours: {seq: error}). Once one event of a key failed, later
        events of that key are held back too, so that they never overtake it."""
        headers = [("content-type", CONTENT_TYPE.encode())]
        spans = tracing.publishing(self.service, rows) if tracing.enabled else None
        futures = []
        refused: dict[int, BaseException] = {}
        try:
            for row in rows:
                try:
                    futures.append(await self.producer.send(
                        row["topic"], value=row["payload"], key=row["key"].encode(), headers=headers))
                except MessageSizeTooLargeError as exc:  # refused by the client before sending: this row only
                    refused[row["seq"]] = exc
                    futures.append(_failed(exc))
            results = await asyncio.gather(*futures, return_exceptions=True)
        except BaseException as exc:
            if spans:
                tracing.published(spans, [exc] * len(spans))
            raise
        if spans:
            tracing.published(spans, results)
        done, failed_keys, first_error = set(), set(), None
        published: Counter[str] = Counter()
        for row, res in zip(rows, results):
            if isinstance(res, MessageSizeTooLargeError):  # no retry can succeed: set aside, out of the key's order
                refused[row["seq"]] = res
                EVENTS_PUBLISH_FAILED.labels(self.service, row["topic"]).inc()
                continue
            if isinstance(res, BaseException) or (row["topic"], row["key"]) in failed_keys:
                failed_keys.add((row["topic"], row["key"]))
                if isinstance(res, BaseException):
                    first_error = first_error or res
                EVENTS_PUBLISH_FAILED.labels(self.service, row["topic"]).inc()
                continue
            done.add(row["seq"])
            published[row["topic"]] += 1
        for topic, n in published.items():
            EVENTS_PUBLISHED.labels(self.service, topic).inc(n)
        return done, first_error, refused

    async def _update_gauges(self) -> None:
        now = time.monotonic()
        if now - self._last_gauge < 0.5:
            return
        self._last_gauge = now
        t = self.table
        async with self.engine.connect() as conn:
            count, oldest = (await conn.execute(select(func.count(), func.min(t.c.created_at)))).one()
        OUTBOX_BACKLOG.labels(self.service).set(count)
        OUTBOX_OLDEST_AGE.labels(self.service).set((utcnow() - oldest).total_seconds() if oldest else 0)
