"""No single record can stall an inbound feed: a record as large as the broker takes, and every kind of poison the
chaos suite sends, are dead-lettered and the valid records behind them, on every partition, are applied within
seconds; a consumer that does stop making progress says so in /readyz and in its metrics."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid

import asyncpg
import orjson
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from prometheus_client import REGISTRY

import matching.main
import registry.main
from common.events import CloudEvent
from common.limits import DEAD_LETTER_HEAD_BYTES, MAX_RECORD_BYTES
from matching.config import Settings as MatchingSettings
from registry.config import Settings as RegistrySettings
from registry.domain import uscc_check_char
from tests.support.harness import (
    auth,
    fresh_database,
    produce,
    read_topic,
    run_service,
    tooling_security,
    wait_until,
)
from tests.support.poison import (
    KINDS,
    POSTED,
    enterprise_poison,
    enterprise_record,
    talent_demand,
    talent_demand_poison,
    talent_demand_record,
)

pytestmark = pytest.mark.integration

TALENT = "municipal.talent-demand.v1"
ENTERPRISE = "municipal.enterprise.v1"
APPLIED_WITHIN = 20.0  # seconds from the last valid record sent to all of them applied, on a busy 2-core machine


def uscc(i: int) -> str:
    """A valid USCC numbered i."""
    first17 = f"9131011800{i:07d}"
    return first17 + uscc_check_char(first17)


def metric(name: str, **labels: str) -> float | None:
    """The current value of a metric sample in this process's registry."""
    return REGISTRY.get_sample_value(name, labels)


async def opportunity_ids(svc, external_ids: set[str]) -> set[str]:
    """Which of the municipal positions matching has turned into opportunities."""
    page = (await svc.http.get("/opportunities", params={"kind": "talent_demand", "limit": 200})).json()
    return {o["external_id"] for o in page["items"]} & external_ids


async def partitions(svc, topic: str) -> list[int]:
    """The partitions of an inbound topic, as the service's consumer knows them."""
    consumer = next(c for c in svc.consumers if topic in c.subscriptions)
    return sorted(consumer._consumer.partitions_for_topic(topic))


def largest_value(key: bytes, headers: list[tuple[str, bytes]]) -> int:
    """The largest value the broker takes in one record with this key and these headers."""
    return MAX_RECORD_BYTES - DefaultRecordBatchBuilder.estimate_size_in_bytes(key, b"", headers) - 16


async def test_the_service_producer_and_every_topic_it_creates_take_records_up_to_the_one_record_limit(broker):
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from common.outbox import producer_for
    from common.service import ensure_topics

    producer = producer_for(broker.bootstrap, client_id="limits", security=tooling_security(broker.bootstrap))
    assert producer._max_request_size == MAX_RECORD_BYTES
    topic = f"scratch.limits.{uuid.uuid4().hex[:8]}.v1"
    await ensure_topics(broker.bootstrap, [topic], partitions=1, security=tooling_security(broker.bootstrap))
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap,
                                **tooling_security(broker.bootstrap).client_kwargs())
    await admin.start()
    try:
        [resp] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    values = {entry[0]: entry[1] for res in resp.resources for entry in res[4]}  # (name, value, ...) per entry
    assert values["max.message.bytes"] == str(MAX_RECORD_BYTES)


async def test_a_record_too_large_to_dead_letter_as_it_is_goes_as_an_envelope_and_the_feed_goes_on(broker):
    async with run_service(matching.main.create_app, MatchingSettings, broker=broker,
                           db_url=await fresh_database("matching")) as svc:
        parts = await partitions(svc, TALENT)
        marker = uuid.uuid4().hex[:8]
        key, headers = f"huge-{marker}".encode(), [("traceparent", b"00-abc-def-01"), ("origin", "人社".encode())]
        padding = "岗" * ((largest_value(key, headers) - 2000) // 3)  # ~2 MB: three bytes a character in UTF-8
        huge = CloudEvent(id=f"huge-{marker}", source="//rsj.sh.gov.cn/talent-demand", type=f"cn.gov.sh.cjrh.{POSTED}",
                          time="2026-03-02T08:30:00+08:00",
                          data=talent_demand(f"huge-{marker}", employer_uscc=uscc(1), title=padding)).to_bytes()
        huge = huge[:-2] + b" " * (largest_value(key, headers) - len(huge)) + huge[-2:]  # JSON allows the spaces
        assert len(huge) > 2_000_000
        for p in parts:  # one on every partition, each in front of that partition's valid records
            await produce(broker.bootstrap, TALENT, [huge], key=key, partition=p, headers=headers,
                          max_request_size=MAX_RECORD_BYTES)
        valid = {f"after-{marker}-{p}": p for p in parts}
        for ext, p in valid.items():
            await produce(broker.bootstrap, TALENT, [talent_demand_record(ext, employer_uscc=uscc(2))],
                          key=ext.encode(), partition=p)
        sent = time.monotonic()

        await wait_until(lambda: _applied(svc, set(valid)), timeout=APPLIED_WITHIN,
                         what="the valid records behind the oversized ones")
        assert time.monotonic() - sent < APPLIED_WITHIN

        dlq = await read_topic(broker.bootstrap, f"{TALENT}.dlq", timeout=30, until=lambda rs: sum(
            r.key == key for r in rs) >= len(parts))
        letters = [r for r in dlq if r.key == key]
        assert len(letters) == len(parts)
        digest = hashlib.sha256(huge).hexdigest()
        for r in letters:
            h = dict(r.headers)
            assert h["dlq.envelope"] == b"1" and h["dlq.original.sha256"] == digest.encode()
            assert "title" in h["dlq.reason"].decode() and h["dlq.original.topic"] == TALENT.encode()
            assert len(r.value) < 64 * 1024, "the envelope is bounded"
            env = orjson.loads(r.value)
            orig = env["original"]
            assert orig["topic"] == TALENT and orig["partition"] == int(h["dlq.original.partition"])
            assert orig["offset"] == int(h["dlq.original.offset"])
            assert orig["value"]["size"] == len(huge) and orig["value"]["sha256"] == digest
            assert base64.b64decode(orig["value"]["head_base64"]) == huge[:DEAD_LETTER_HEAD_BYTES]
            assert base64.b64decode(orig["key"]["base64"]) == key
            assert {x["key"]: base64.b64decode(x["base64"]) for x in orig["headers"]} == dict(headers)
            assert "title" in env["reason"]
        assert {r.partition for r in letters} <= set(parts)
        consumer = next(c for c in svc.consumers if TALENT in c.subscriptions)
        assert consumer.stats.enveloped == len(parts) and consumer.stats.dead_letter_failed == 0
        ready = (await svc.http.get("/readyz")).json()
        assert ready["status"] == "ready", ready


async def _applied(svc, wanted: set[str]) -> bool:
    return await opportunity_ids(svc, wanted) == wanted


async def test_every_poison_kind_on_the_talent_demand_feed_is_dead_lettered_and_the_feed_goes_on(broker):
    async with run_service(matching.main.create_app, MatchingSettings, broker=broker,
                           db_url=await fresh_database("matching")) as svc:
        parts = await partitions(svc, TALENT)
        marker = uuid.uuid4().hex[:8]
        key = f"poison-{marker}".encode()
        poison = {}
        for p in parts:
            for n, kind in enumerate(KINDS):
                raw = talent_demand_poison(1000 * p + n, kind, valid_uscc=uscc(3))
                poison[raw] = kind
                await produce(broker.bootstrap, TALENT, [raw], key=key, partition=p)
        valid = {f"behind-poison-{marker}-{p}": p for p in parts}
        for ext, p in valid.items():
            await produce(broker.bootstrap, TALENT, [talent_demand_record(ext, employer_uscc=uscc(4))],
                          key=ext.encode(), partition=p)
        sent = time.monotonic()
        await wait_until(lambda: _applied(svc, set(valid)), timeout=APPLIED_WITHIN,
                         what="the valid records behind every kind of poison")
        assert time.monotonic() - sent < APPLIED_WITHIN
        dlq = await read_topic(broker.bootstrap, f"{TALENT}.dlq", timeout=30,
                               until=lambda rs: sum(r.key == key for r in rs) >= len(poison))
        mine = [r for r in dlq if r.key == key]
        assert {r.value for r in mine} == set(poison), "each poison message byte for byte, once"
        assert len(mine) == len(poison) and all(dict(r.headers)["dlq.reason"] for r in mine)


async def test_every_poison_kind_on_the_enterprise_feed_is_dead_lettered_and_the_feed_goes_on(broker):
    async with run_service(registry.main.create_app, RegistrySettings, broker=broker,
                           db_url=await fresh_database("registry")) as svc:
        parts = await partitions(svc, ENTERPRISE)
        marker = uuid.uuid4().hex[:8]
        key = f"poison-{marker}".encode()
        poison = set()
        for p in parts:
            for n, kind in enumerate(KINDS):
                raw = enterprise_poison(1000 * p + n, kind, valid_uscc=uscc(5))
                poison.add(raw)
                await produce(broker.bootstrap, ENTERPRISE, [raw], key=key, partition=p)
        valid = {uscc(100 + p): p for p in parts}
        for code, p in valid.items():
            await produce(broker.bootstrap, ENTERPRISE, [enterprise_record(code, f"毒药之后企业{marker}{p}")],
                          key=code.encode(), partition=p)
        sent = time.monotonic()

        async def registered():
            r = await svc.http.get("/institutions", params={"q": f"毒药之后企业{marker}", "limit": 50},
                                   headers=auth("office_admin"))
            return {i["uscc"] for i in r.json()["items"]} == set(valid)

        await wait_until(registered, timeout=APPLIED_WITHIN, what="the valid enterprises behind every kind of poison")
        assert time.monotonic() - sent < APPLIED_WITHIN
        dlq = await read_topic(broker.bootstrap, f"{ENTERPRISE}.dlq", timeout=30,
                               until=lambda rs: sum(r.key == key for r in rs) >= len(poison))
        assert {r.value for r in dlq if r.key == key} == poison


async def test_a_consumer_that_makes_no_progress_while_records_wait_is_reported_degraded(broker):
    db_url = await fresh_database("matching")
    async with run_service(matching.main.create_app, MatchingSettings, broker=broker, db_url=db_url,
                           consumer_stall_seconds=1.0) as svc:
        consumer = next(c for c in svc.consumers if TALENT in c.subscriptions)
        labels = {"service": "matching", "consumer": consumer.name}
        assert (await svc.http.get("/readyz")).json()["status"] == "ready"
        assert metric("consumer_stalled", **labels) == 0.0
        # Another session holds the consumer's table: its batch waits (as behind a long migration or a lock).
        locker = await asyncpg.connect(db_url.replace("+asyncpg", ""))
        try:
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE processed_events IN ACCESS EXCLUSIVE MODE")
            ext = f"stalled-{uuid.uuid4().hex[:8]}"
            await produce(broker.bootstrap, TALENT, [talent_demand_record(ext, employer_uscc=uscc(6))],
                          key=ext.encode())

            async def degraded():
                body = (await svc.http.get("/readyz")).json()
                return body if body["status"] == "degraded" else None

            body = await wait_until(degraded, timeout=20, what="/readyz to report the stalled consumer")
            assert list(body["degraded"]) == [f"consumer {consumer.group_id}"]
            assert "no progress" in body["degraded"][f"consumer {consumer.group_id}"]
            assert metric("consumer_stalled", **labels) == 1.0
            assert metric("consumer_stalled_seconds", **labels) > 1.0
            metrics_text = (await svc.http.get("/metrics")).text
            assert f'consumer_stalled{{consumer="{consumer.name}",service="matching"}} 1.0' in metrics_text
        finally:
            await tx.rollback()
            await locker.close()
        await wait_until(lambda: _applied(svc, {ext}), timeout=20, what="the record once the lock is gone")
        await wait_until(lambda: metric("consumer_stalled", **labels) == 0.0, timeout=10, what="no stall")
        assert (await svc.http.get("/readyz")).json()["status"] == "ready"
