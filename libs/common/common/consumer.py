"""Idempotent Kafka consumers with dead-lettering.

For each partition batch: decode every message (bytes that are not a CloudEvent go straight to `<topic>.dlq`), apply
the handlers and record each event id in `processed_events` in one database transaction, and only then commit the
offsets. An event whose CloudEvents `source` does not own the topic it arrived on (common.provenance) is dead-lettered
with that reason, never applied. If the batch fails, its messages are retried one by one with bounded backoff; a
message that still fails, or is malformed, is dead-lettered with the original bytes, the reason and the consumer's
name, and the consumer goes on.
Infrastructure failures (database or broker down) are never blamed on a message: the batch is rewound and retried.

No single record can stall a consumer: a record too large to dead-letter as it is goes to the DLQ as a bounded
envelope (common.deadletter), and a dead-letter send that keeps failing while the broker answers is given up after
`dead_letter_timeout` (logged, counted in `events_dead_letter_failed_total`, the record left in its topic) instead of
being retried forever. A consumer that makes no progress while it has work for longer than `stall_seconds` says so
(`stalled_for`, the `consumer_stalled` metric, a `degraded` detail in /readyz).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError
from pydantic import BaseModel, ValidationError
from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common import tracing
from common.context import correlation_id_var, event_id_var
from common.db import is_unavailable
from common.deadletter import REASON_BYTES, DeadLetter, Original, envelope_for, letter_for
from common.events import CloudEvent, MalformedEvent, brief_errors, dead_letter_topic
from common.kafka import KafkaSecurity
from common.metrics import (
    CONSUMER_LAG,
    CONSUMER_STALLED,
    CONSUMER_STALLED_SECONDS,
    EVENTS_CONSUMED,
    EVENTS_DEAD_LETTER_FAILED,
    EVENTS_DEAD_LETTERED,
    EVENTS_FAILED,
)
from common.outbox import producer_is_broken
from common.provenance import provenance_problem

# How long stopping may take to commit and leave the group before the process moves on (shutdown stays bounded).
STOP_SECONDS = 10.0
log = logging.getLogger("common.consumer")

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]
M = TypeVar("M", bound=BaseModel)


class PoisonMessage(Exception):
    """A handler's verdict that this event can never be applied (invalid content): dead-letter it, do not retry."""


def parse_payload(model: type[M], event: CloudEvent, what: str) -> M:
    """Validate a consumed event's data; content that can never be applied is poison (dead-lettered, not retried)."""
    try:
        return model.model_validate(event.data)
    except ValidationError as exc:
        raise PoisonMessage(f"{what} payload invalid: {brief_errors(exc)}") from exc


class _NotSent(Exception):
    """A dead letter was given up: roll its claim back."""


class InfrastructureUnavailable(Exception):
    """The database or broker is unreachable; the message is fine and must be retried later."""


def _is_infrastructure(exc: BaseException) -> bool:
    return isinstance(exc, InfrastructureUnavailable) or is_unavailable(exc)


def _too_large(exc: BaseException) -> bool:
    """Whether a send failed because the record is larger than the producer or the broker accepts."""
    while exc is not None:
        if isinstance(exc, (MessageSizeTooLargeError, RecordListTooLargeError)):
            return True
        exc = exc.__cause__
    return False


@dataclass
class Subscription:
    """Handlers for the event types of one topic; `strict` dead-letters types it does not know (inbound topics)."""

    topic: str
    handlers: dict[str, Handler]
    strict: bool = False


@dataclass
class _Decoded:
    msg: ConsumerRecord
    event: CloudEvent | None = None
    error: str | None = None


@dataclass
class ConsumerStats:
    """Counters a test or benchmark can read without scraping Prometheus."""

    applied: int = 0
    duplicates: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    enveloped: int = 0
    dead_letter_failed: int = 0
    last_error: str | None = None
    positions: dict = field(default_factory=dict)


def _merge(first: dict, more: asyncio.Queue, *, limit: int) -> list[tuple[TopicPartition, list[ConsumerRecord]]]:
    """One batch from the first fetch and those queued behind it (up to `limit` records), in order per partition."""
    merged: dict[TopicPartition, list[ConsumerRecord]] = {}
    batch, total = first, 0
    while True:
        for tp, msgs in batch.items():
            merged.setdefault(tp, []).extend(msgs)
            total += len(msgs)
        if total >= limit or more.empty():
            break
        batch = more.get_nowait()
    return [(tp, msgs) for tp, msgs in merged.items() if msgs]


class EventConsumer:
    """Runs one consumer group over some topics; see the module docstring for the guarantees."""

    def __init__(
        self, *, name: str, service: str, bootstrap: str, subscriptions: list[Subscription],
        sessions: async_sessionmaker[AsyncSession], processed: Table, producer: AIOKafkaProducer,
        max_attempts: int = 5, backoff_seconds: float = 0.2, batch_size: int = 500, group_suffix: str = "",
        renew_producer: Callable[[], Awaitable[object]] | None = None, security: KafkaSecurity,
        owners: Mapping[str, frozenset[str]] | None = None, stall_seconds: float = 120.0,
        dead_letter_timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.service = service
        self.bootstrap = bootstrap
        self.security = security
        self.owners = owners or {}  # topic -> the CloudEvents sources allowed on it (common.provenance)
        self.subscriptions = {s.topic: s for s in subscriptions}
        self.sessions = sessions
        self.processed = processed
        self.producer = producer
        self.renew_producer = renew_producer
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.batch_size = batch_size
        self.group_id = f"{service}.{name}{group_suffix}"
        self.stall_seconds = stall_seconds
        self.dead_letter_timeout = dead_letter_timeout
        self.stats = ConsumerStats()
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = False
        self._last_lag = 0.0
        # Progress watch: when offsets last moved on (or the consumer was last seen with nothing to do), how many
        # records are being handled right now, and the lag last measured (high watermark minus fetch position).
        self._progress_at = time.monotonic()
        self._in_flight = 0
        self._behind = 0
        CONSUMER_STALLED_SECONDS.labels(service, name).set_function(self.stalled_for)
        CONSUMER_STALLED.labels(service, name).set_function(lambda: float(self.is_stalled()))

    def stalled_for(self) -> float:
        """Seconds without progress while there is work (records being handled or lag); 0 when keeping up."""
        if self._in_flight == 0 and self._behind == 0:
            return 0.0
        return max(0.0, time.monotonic() - self._progress_at)

    def is_stalled(self) -> bool:
        """Whether no progress was made for longer than `stall_seconds` while there was work."""
        return self.stalled_for() > self.stall_seconds

    def stall_detail(self) -> str | None:
        """Why this consumer counts as stalled (for /readyz), or None."""
        if not self.is_stalled():
            return None
        return (f"no progress for {self.stalled_for():.0f}s (limit {self.stall_seconds:g}s) with "
                f"{max(self._in_flight, self._behind)} message(s) waiting; last error: {self.stats.last_error}")

    def _progressed(self) -> None:
        self._progress_at = time.monotonic()

    def stop(self) -> None:
        """Ask the loop to end after the current batch."""
        self._stopping = True

    async def run(self) -> None:
        """Connect (retrying while the broker is away) and consume until stopped."""
        while not self._stopping:
            # retry_backoff_ms: with aiokafka's 100 ms default, its metadata and fetch loops spun at ~100% of a core
            # per worker process while the broker was down (measured; compare aio-libs/aiokafka#1155); 500 ms: ~2%.
            consumer = AIOKafkaConsumer(
                *self.subscriptions, bootstrap_servers=self.bootstrap, group_id=self.group_id,
                client_id=self.group_id, enable_auto_commit=False, auto_offset_reset="earliest",
                max_poll_records=self.batch_size, isolation_level="read_committed",
                session_timeout_ms=10000, heartbeat_interval_ms=1000, metadata_max_age_ms=5000, retry_backoff_ms=500,
                **self.security.client_kwargs(),
            )
            try:
                await consumer.start()
            except KafkaError as exc:
                log.warning("consumer %s: broker unavailable (%r), retrying", self.group_id, exc)
                await asyncio.sleep(1.0)
                continue
            self._consumer = consumer
            try:
                await self._loop(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the consumer die silently: reconnect (the stall watch counts on)
                self.stats.last_error = repr(exc)
                log.warning("consumer %s: loop failed (%r); reconnecting", self.group_id, exc)
                await asyncio.sleep(1.0)
            finally:
                self._in_flight = 0
                self._consumer = None
                try:  # bounded: leaving the group waits on the coordinator, up to the request timeout (40 s)
                    await asyncio.wait_for(consumer.stop(), timeout=STOP_SECONDS)
                except Exception:  # a broker that vanished or is slow; the group rebalances without us anyway
                    pass

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        # The client fetches a partition's next records only once the last ones were taken, so taking them only
        # between batches would leave whatever arrives during a batch waiting two batches. A fetch task takes them
        # as they come (a few fetches ahead at most) and each batch applies everything fetched so far.
        fetched: asyncio.Queue[dict[TopicPartition, list[ConsumerRecord]]] = asyncio.Queue(maxsize=4)
        fetcher = asyncio.create_task(self._fetch(consumer, fetched), name=f"fetch {self.group_id}")
        try:
            while not self._stopping:
                try:
                    first = await asyncio.wait_for(fetched.get(), timeout=0.2)
                except TimeoutError:
                    if fetcher.done():
                        fetcher.result()  # the fetch task failed: raise its error here
                    await self._report_lag(consumer)
                    continue
                work = _merge(first, fetched, limit=self.batch_size)
                self._in_flight = sum(len(msgs) for _, msgs in work)
                # Partitions are independent (order is kept per key, so per partition): each is applied in its own
                # transaction, concurrently, so one partition's database round trips do not queue behind another's;
                # their offsets are then committed together.
                done = await asyncio.gather(*(self._handle_partition(consumer, tp, msgs) for tp, msgs in work))
                await self._commit(consumer, {tp: msgs[-1].offset + 1 for (tp, msgs), ok in zip(work, done) if ok})
                self._in_flight = 0
                await self._report_lag(consumer, force=True)
        finally:
            fetcher.cancel()
            await asyncio.gather(fetcher, return_exceptions=True)

    async def _fetch(self, consumer: AIOKafkaConsumer, fetched: asyncio.Queue) -> None:
        while not self._stopping:
            batches = await consumer.getmany(timeout_ms=200, max_records=self.batch_size)
            if any(batches.values()):
                await fetched.put(batches)

    async def _handle_partition(self, consumer: AIOKafkaConsumer, tp: TopicPartition, msgs: list) -> bool:
        """Apply one partition's messages, retrying on infrastructure trouble; False if the partition went away."""
        failures = 0
        while not self._stopping:
            try:
                await self._process(msgs)
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # infrastructure trouble: retry the same batch (applied events are recorded)
                if tp not in consumer.assignment():
                    return False  # revoked in a rebalance: the partition's new owner redoes it, idempotently
                failures += 1
                self.stats.last_error = repr(exc)
                log.warning("consumer %s: batch on %s failed (%r); retrying", self.group_id, tp, exc)
                await asyncio.sleep(min(5.0, self.backoff_seconds * 2 ** min(failures, 5)))
        return False

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        """Commit applied offsets, retrying while the broker is away; partitions revoked meanwhile are skipped (their
        new owner finds the events recorded as processed and skips them)."""
        failures = 0
        while offsets and not self._stopping:
            offsets = {tp: off for tp, off in offsets.items() if tp in consumer.assignment()}
            if not offsets:
                return
            try:
                await consumer.commit(offsets)
                for tp, off in offsets.items():
                    self.stats.positions[(tp.topic, tp.partition)] = off
                self._progressed()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.stats.last_error = repr(exc)
                log.warning("consumer %s: committing offsets failed (%r); retrying", self.group_id, exc)
                await asyncio.sleep(min(5.0, self.backoff_seconds * 2 ** min(failures, 5)))

    async def _process(self, msgs: list[ConsumerRecord]) -> None:
        decoded = [self._decode(m) for m in msgs]
        good = [d for d in decoded if d.error is None]
        try:
            if good:
                await self._apply_batch(good)
            for d in decoded:
                if d.error is not None:
                    await self._dead_letter(d.msg, d.error, event=d.event)
            return
        except Exception as exc:
            if _is_infrastructure(exc):
                raise
            log.info("consumer %s: batch failed (%.500r); retrying messages one by one", self.group_id, exc)
        for d in decoded:
            if d.error is not None:
                await self._dead_letter(d.msg, d.error, event=d.event)
            else:
                await self._apply_one_with_retries(d)

    def _decode(self, msg: ConsumerRecord) -> _Decoded:
        try:
            ev = CloudEvent.from_record(msg.value, msg.headers)  # structured or binary content mode
        except MalformedEvent as exc:
            return _Decoded(msg, error=str(exc))
        problem = provenance_problem(msg.topic, ev.source, self.owners)
        if problem:
            return _Decoded(msg, event=ev, error=problem)
        sub = self.subscriptions[msg.topic]
        if ev.type not in sub.handlers and sub.strict:
            return _Decoded(msg, error=f"unknown event type {ev.type!r} for topic {msg.topic}")
        return _Decoded(msg, event=ev)

    async def _apply_batch(self, items: list[_Decoded]) -> None:
        p = self.processed
        ids = list({d.event.id for d in items})
        async with self.sessions() as session, session.begin():
            seen = set(
                (await session.execute(
                    select(p.c.event_id).where(p.c.consumer == self.name, p.c.event_id.in_(ids))
                )).scalars()
            )
            rows = []
            for d in items:
                ev = d.event
                if ev.id in seen:
                    self._count(d.msg.topic, "duplicate")
                    continue
                seen.add(ev.id)
                await self._dispatch(session, d)
                rows.append({"consumer": self.name, "event_id": ev.id, "topic": d.msg.topic,
                             "processed_at": datetime.now(UTC)})
            if rows:
                await session.execute(insert(p), rows)

    async def _apply_one_with_retries(self, d: _Decoded) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._apply_batch([d])
                return
            except PoisonMessage as exc:
                await self._dead_letter(d.msg, str(exc), event=d.event)
                return
            except MalformedEvent as exc:
                await self._dead_letter(d.msg, str(exc), event=d.event)
                return
            except Exception as exc:
                if _is_infrastructure(exc):
                    raise
                EVENTS_FAILED.labels(self.service, self.name, d.msg.topic).inc()
                if attempt >= self.max_attempts:
                    reason = f"failed after {attempt} attempts: {exc!r}"
                    await self._dead_letter(d.msg, reason, event=d.event, trace=traceback.format_exc())
                    return
                await asyncio.sleep(self.backoff_seconds * 2 ** (attempt - 1))

    async def _dispatch(self, session: AsyncSession, d: _Decoded) -> None:
        ev = d.event
        handler = self.subscriptions[d.msg.topic].handlers.get(ev.type)
        if handler is None:
            self._count(d.msg.topic, "skipped")
            return
        tok_c = correlation_id_var.set(ev.correlationid or ev.id)
        tok_e = event_id_var.set(ev.id)
        try:
            with tracing.consuming(ev, d.msg, service=self.service, group=self.group_id):
                await handler(session, ev)
        finally:
            correlation_id_var.reset(tok_c)
            event_id_var.reset(tok_e)
        self._count(d.msg.topic, "applied")

    def _count(self, topic: str, outcome: str) -> None:
        EVENTS_CONSUMED.labels(self.service, self.name, topic, outcome).inc()
        if outcome == "applied":
            self.stats.applied += 1
        elif outcome == "duplicate":
            self.stats.duplicates += 1
        else:
            self.stats.skipped += 1

    async def _dead_letter(
        self, msg: ConsumerRecord, reason: str, *, event: CloudEvent | None = None, trace: str | None = None,
    ) -> None:
        """Send the original (or, if too large, a bounded envelope) to `<topic>.dlq` once, even if this message is
        redelivered after a crash; never retry forever (see `_send_dead_letter`)."""
        marker = f"dlq:{msg.topic}:{msg.partition}:{msg.offset}"
        reason = reason[:REASON_BYTES]  # a validation error may quote a whole oversized value
        original = Original(topic=msg.topic, partition=msg.partition, offset=msg.offset, key=msg.key,
                            value=msg.value, headers=list(msg.headers or ()), timestamp=msg.timestamp)
        letter = letter_for(original, reason=reason, consumer=self.group_id,
                            event_id=event.id if event is not None else None, trace=trace)
        try:
            async with self.sessions() as session, session.begin():
                # Claim the record first: a concurrent redelivery waits on this row until the send is over, then
                # finds it. A send given up rolls the claim back (the record was not dead-lettered).
                try:
                    async with session.begin_nested():
                        await session.execute(insert(self.processed).values(
                            consumer=self.name, event_id=marker, topic=msg.topic, processed_at=datetime.now(UTC)))
                except IntegrityError:
                    return  # dead-lettered before (a redelivery after a crash)
                letter = await self._send_dead_letter(original, letter, reason=reason, event=event)
                if letter is None:
                    raise _NotSent
        except _NotSent:
            return
        EVENTS_DEAD_LETTERED.labels(self.service, self.name, msg.topic).inc()
        self.stats.dead_lettered += 1
        self.stats.enveloped += letter.enveloped
        log.warning("consumer %s: dead-lettered %s%s: %s", self.group_id, marker,
                    " as an envelope" if letter.enveloped else "", reason)

    async def _send_dead_letter(
        self, original: Original, letter: DeadLetter, *, reason: str, event: CloudEvent | None,
    ) -> DeadLetter | None:
        """Send a dead letter; the letter sent, or None when it was given up.

        A record too large for the producer or the broker goes as an envelope instead. Other failures are retried with
        backoff for `dead_letter_timeout` seconds; then, if the broker still answers (so only the dead-letter topic
        refuses: missing, not writable, too small a limit), the letter is given up: the record stays in its topic at
        its offset, the failure is logged and counted, and the consumer goes on. If the broker does not answer at
        all, nothing could progress anyway: the batch is rewound and retried (InfrastructureUnavailable)."""
        topic = dead_letter_topic(original.topic)
        deadline = time.monotonic() + self.dead_letter_timeout
        failures = 0
        while True:
            try:
                await self.producer.send_and_wait(topic, value=letter.value, key=letter.key, headers=letter.headers)
                return letter
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if _too_large(exc) and not letter.enveloped:
                    letter = envelope_for(original, reason=reason, consumer=self.group_id,
                                          event_id=event.id if event is not None else None,
                                          why=f"the dead-letter copy was refused as too large: {exc!r}")
                    continue
                failures += 1
                self.stats.last_error = repr(exc)
                if self.renew_producer is not None and producer_is_broken(exc):
                    try:
                        await self.renew_producer()
                    except Exception as renew_exc:  # the broker may be away; the next attempt tries again
                        log.warning("consumer %s: replacing the producer failed (%r)", self.group_id, renew_exc)
                if time.monotonic() >= deadline:
                    if not await self._broker_answers():
                        raise InfrastructureUnavailable(f"broker unreachable while dead-lettering: {exc!r}") from exc
                    EVENTS_DEAD_LETTER_FAILED.labels(self.service, self.name, original.topic).inc()
                    self.stats.dead_letter_failed += 1
                    log.error(
                        "consumer %s: could not dead-letter %s:%d:%d to %s for %.0fs (%r); skipped it: the record "
                        "stays in its topic at that offset. Reason it was refused: %s", self.group_id,
                        original.topic, original.partition, original.offset, topic, self.dead_letter_timeout, exc,
                        reason)
                    return None
                log.warning("consumer %s: dead-lettering to %s failed (%r); retrying", self.group_id, topic, exc)
                await asyncio.sleep(min(2.0, self.backoff_seconds * 2 ** min(failures, 5),
                                        max(0.0, deadline - time.monotonic())))

    async def _broker_answers(self) -> bool:
        """Whether the broker serves this consumer metadata right now: then the feed could go on, and only the
        dead-letter send is stuck (a refusing DLQ topic, a broken producer); if not, nothing could progress anyway."""
        clients = [c._client for c in (self._consumer,) if c is not None] + [self.producer.client]
        for client in clients:
            try:
                await asyncio.wait_for(client.fetch_all_metadata(), timeout=5)
                return True
            except Exception:
                continue
        return False

    async def _report_lag(self, consumer: AIOKafkaConsumer, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_lag < 1.0:
            return
        self._last_lag = now
        behind = 0
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            try:
                pos = await consumer.position(tp)
            except Exception:
                continue
            lag = max(0, high - pos)
            behind += lag
            CONSUMER_LAG.labels(self.service, self.name, tp.topic, str(tp.partition)).set(lag)
        self._behind = behind
        if behind == 0 and self._in_flight == 0:
            self._progressed()  # nothing to do counts as keeping up: a stall is measured from here

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until every assigned partition is consumed up to its high watermark (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = self._consumer
            if c is not None and c.assignment():
                behind = False
                for tp in c.assignment():
                    high = c.highwater(tp)
                    done = self.stats.positions.get((tp.topic, tp.partition))
                    if done is None:  # not handled by this instance: the group's committed offset counts
                        try:
                            done = await c.committed(tp) or 0
                        except Exception:
                            done = 0
                    if high is None or done < high:
                        behind = True
                if not behind:
                    return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"consumer {self.group_id} not idle after {timeout}s")


def subscribe(topic: str, prefix: str, handlers: dict[str, Handler], *, strict: bool = False) -> Subscription:
    """A subscription whose handlers are keyed by contract name (e.g. 'registry.institution.registered')."""
    return Subscription(topic=topic, handlers={f"{prefix}.{name}": fn for name, fn in handlers.items()}, strict=strict)
