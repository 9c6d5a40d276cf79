"""The idempotent consumer: duplicates apply once, poison goes to the DLQ with a reason, and consumption goes on."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from sqlalchemy import func, insert, select

from common.consumer import EventConsumer, PoisonMessage, subscribe
from common.events import CloudEvent
from common.service import ensure_topics
from tests.support.harness import fresh_database, produce, read_topic, tooling_security, wait_until
from tests.support.scratch import Scratch, WidgetPayload, new_topic, processed, widgets

pytestmark = pytest.mark.integration

PREFIX = "cn.gov.sh.cjrh"


def event_bytes(*, name: str = "scratch.widget.made", data=None, event_id: str | None = None) -> bytes:
    """A valid CloudEvent carrying a widget (or the given data)."""
    wid = str(uuid.uuid4())
    return CloudEvent(
        id=event_id or str(uuid.uuid4()), source="//tests", type=f"{PREFIX}.{name}", subject=wid,
        time=datetime.now(UTC), data=data if data is not None else {"id": wid, "name": "w"},
    ).to_bytes()


async def make_widget(session, event: CloudEvent) -> None:
    """Handler: insert a widget; invalid payloads are poison; a name of 'explode' fails every time."""
    try:
        w = WidgetPayload.model_validate(event.data)
    except Exception as exc:
        raise PoisonMessage(f"widget payload invalid: {exc}") from exc
    if w.name == "explode":
        raise RuntimeError("this handler always fails for 'explode'")
    await session.execute(insert(widgets).values(id=w.id, name=w.name))


@pytest.fixture
async def harness(broker):
    topic = new_topic()
    await ensure_topics(broker.bootstrap, [topic, f"{topic}.dlq"], partitions=1, security=broker.admin)
    s = Scratch(await fresh_database("consumer"), broker.bootstrap)
    await s.create()
    await s.producer.start()
    consumer = EventConsumer(
        name="widgets", service="scratch", bootstrap=broker.bootstrap,
        subscriptions=[subscribe(topic, PREFIX, {"scratch.widget.made": make_widget}, strict=True)],
        sessions=s.sessions, processed=processed,
        producer=s.producer, max_attempts=3, backoff_seconds=0.01, security=s.security,
    )
    consumer.group_id = f"scratch-{uuid.uuid4().hex[:6]}"
    task = asyncio.create_task(consumer.run())
    yield s, consumer, topic
    consumer.stop()
    await asyncio.wait_for(task, 20)
    await s.close()


async def count_widgets(s: Scratch) -> int:
    async with s.sessions() as session:
        return await session.scalar(select(func.count()).select_from(widgets))


async def test_the_same_event_delivered_twice_is_applied_once(harness, broker):
    s, consumer, topic = harness
    first, other = event_bytes(), event_bytes()
    await produce(broker.bootstrap, topic, [first, first, other, first])
    await wait_until(lambda: consumer.stats.applied + consumer.stats.duplicates >= 4, what="all four consumed")
    assert await count_widgets(s) == 2
    assert consumer.stats.applied == 2 and consumer.stats.duplicates == 2


async def test_poison_messages_are_dead_lettered_with_a_reason_and_consumption_goes_on(harness, broker):
    s, consumer, topic = harness
    poison = {
        b"{not json": "not valid JSON",
        b"[1, 2, 3]": "must be a JSON object",
        orjson.dumps({"specversion": "0.3", "id": "x"}): "unsupported specversion",
        orjson.dumps({"specversion": "1.0", "id": "x", "type": "t"}): "invalid CloudEvent envelope",
        event_bytes(name="scratch.widget.melted"): "unknown event type",
        event_bytes(data={"id": 42}): "widget payload invalid",
        event_bytes(data={"id": str(uuid.uuid4()), "name": "explode"}): "failed after 3 attempts",
        "名字".encode("gb18030"): "not valid JSON",
    }
    good = event_bytes()
    await produce(broker.bootstrap, topic, [*poison, None, good])

    await wait_until(lambda: consumer.stats.applied >= 1, timeout=30, what="the good event after the poison")
    assert await count_widgets(s) == 1

    dlq = await read_topic(broker.bootstrap, f"{topic}.dlq", until=lambda rs: len(rs) >= len(poison) + 1)
    assert len(dlq) == len(poison) + 1
    reasons = {r.value: dict(r.headers)["dlq.reason"].decode() for r in dlq}
    for raw, expected in poison.items():
        assert expected in reasons[raw], (raw, reasons[raw])
    assert "tombstone" in reasons[None]
    for r in dlq:
        headers = dict(r.headers)
        assert headers["dlq.consumer"].decode() == consumer.group_id
        assert headers["dlq.original.topic"].decode() == topic


async def test_a_poison_message_redelivered_after_a_crash_is_dead_lettered_once(harness, broker):
    _, consumer, topic = harness
    bad = b"{broken"
    await produce(broker.bootstrap, topic, [bad, event_bytes()])
    await wait_until(lambda: consumer.stats.applied >= 1, what="consumed")
    # Simulate a crash before the offset commit: the same record is handled again.
    records = await read_topic(broker.bootstrap, topic, until=lambda rs: len(rs) >= 2)
    await consumer._process([records[0]])
    sentinel = b"{sentinel"
    await produce(broker.bootstrap, topic, [sentinel])
    dlq = await read_topic(broker.bootstrap, f"{topic}.dlq", until=lambda rs: any(r.value == sentinel for r in rs))
    assert [r.value for r in dlq] == [bad, sentinel]


async def test_a_dead_lettered_copy_keeps_the_original_key_and_headers(harness, broker):
    _, _, topic = harness
    await produce(broker.bootstrap, topic, [b"{broken headers"], key=b"agg-7",
                  headers=[("traceparent", b"00-1-2-01"), ("origin", b"hr")])
    [letter] = await read_topic(broker.bootstrap, f"{topic}.dlq", until=lambda rs: len(rs) >= 1)
    assert letter.key == b"agg-7" and letter.value == b"{broken headers"
    headers = letter.headers
    assert headers[:2] == (("traceparent", b"00-1-2-01"), ("origin", b"hr")), "the original headers come first"
    assert dict(headers)["dlq.reason"] and "dlq.envelope" not in dict(headers)


async def test_a_dead_letter_topic_that_refuses_every_record_does_not_stall_the_consumer(broker):
    """A dead-letter topic the broker will not write to (here: a 64-byte record limit) costs the poison record its
    dead letter after `dead_letter_timeout`, counted and logged, and the consumer goes on."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from prometheus_client import REGISTRY

    topic = new_topic()
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap,
                                **tooling_security(broker.bootstrap).client_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1), NewTopic(f"{topic}.dlq", 1, 1,
                                                                  topic_configs={"max.message.bytes": "64"})])
    finally:
        await admin.close()
    s = Scratch(await fresh_database("consumer"), broker.bootstrap)
    await s.create()
    await s.producer.start()
    consumer = EventConsumer(
        name="refused", service="scratch", bootstrap=broker.bootstrap,
        subscriptions=[subscribe(topic, PREFIX, {"scratch.widget.made": make_widget}, strict=True)],
        sessions=s.sessions, processed=processed, producer=s.producer, max_attempts=2, backoff_seconds=0.01,
        dead_letter_timeout=1.0, security=s.security,
    )
    consumer.group_id = f"scratch-{uuid.uuid4().hex[:6]}"
    task = asyncio.create_task(consumer.run())
    try:
        await produce(broker.bootstrap, topic, [b"{poison", event_bytes()])
        await wait_until(lambda: consumer.stats.applied >= 1 and consumer.stats.dead_letter_failed >= 1, timeout=30,
                         what="the good event applied and the poison's dead letter given up")
        assert consumer.stats.dead_letter_failed == 1 and consumer.stats.dead_lettered == 0
        assert REGISTRY.get_sample_value("events_dead_letter_failed_total", {
            "service": "scratch", "consumer": "refused", "topic": topic}) == 1.0
        await wait_until(lambda: consumer.stats.positions.get((topic, 0)) == 2, timeout=10,
                         what="the committed offset past both records")
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 20)
        await s.close()


async def test_processed_ids_older_than_the_retention_are_pruned(broker):
    import registry.main
    from registry.config import Settings as RegistrySettings
    from tests.support.harness import run_service

    async with run_service(registry.main.create_app, RegistrySettings, broker=broker,
                           db_url=await fresh_database("registry")) as reg:
        t = reg.runtime.spec.processed
        old, fresh = datetime(2020, 1, 1, tzinfo=UTC), datetime.now(UTC)
        async with reg.runtime.engine.begin() as conn:
            await conn.execute(insert(t), [
                {"consumer": "c", "event_id": "old", "topic": "x", "processed_at": old},
                {"consumer": "c", "event_id": "fresh", "topic": "x", "processed_at": fresh},
            ])
        assert await reg.runtime.prune_processed() == 1
        async with reg.runtime.engine.connect() as conn:
            left = set((await conn.execute(select(t.c.event_id).where(t.c.consumer == "c"))).scalars())
        assert left == {"fresh"}
