"""The contract a municipal platform builds from is executable: every inbound example in docs/asyncapi.yaml, sent as it
stands to the real broker, is applied by its real handler (real PostgreSQL), not dead-lettered; and what the schema
refuses (an industry outside the vocabulary) the handler refuses too."""

from __future__ import annotations

import importlib
import uuid
from pathlib import Path

import orjson
import pytest
import yaml
from sqlalchemy import select

from tests.support.harness import auth, fresh_database, produce, read_topic, run_service, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOC = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
# The inbound channels: published by no platform service (operations say who sends), read strictly by one.
INBOUND = {
    topic: [name for name in channel["messages"]]
    for topic, channel in DOC["channels"].items()
    if not topic.endswith(".dlq") and not any(
        op["action"] == "send" and op["channel"]["$ref"] == f"#/channels/{topic}" for op in DOC["operations"].values())
}
CASES = [(topic, name) for topic, names in sorted(INBOUND.items()) for name in names]


def _reader(topic: str) -> str:
    """The service whose consumer group receives the inbound topic."""
    [svc] = {key.split(".", 1)[0] for key, op in DOC["operations"].items()
             if op["action"] == "receive" and op["channel"]["$ref"] == f"#/channels/{topic}"}
    return svc


def test_both_inbound_topics_are_found():
    assert set(INBOUND) == {"municipal.enterprise.v1", "municipal.talent-demand.v1"}
    assert _reader("municipal.enterprise.v1") == "registry" and _reader("municipal.talent-demand.v1") == "matching"


async def _send_example(broker, topic: str, name: str, **data_changes) -> tuple[str, dict]:
    """Produce the message's documented example with a fresh event id (and `data_changes`); returns id and data."""
    example = DOC["components"]["messages"][name]["examples"][0]["payload"]
    event = {**example, "id": f"example-{uuid.uuid4()}", "data": {**example["data"], **data_changes}}
    await produce(broker.bootstrap, topic, [orjson.dumps(event)], key=example["subject"].encode())
    return event["id"], event["data"]


async def _recorded_as_processed(svc, event_id: str) -> bool:
    """Whether the service recorded the event as applied (done in the same transaction as its effect)."""
    t = svc.runtime.spec.processed
    async with svc.runtime.engine.connect() as conn:
        return (await conn.execute(select(t.c.event_id).where(t.c.event_id == event_id))).first() is not None


async def _effect_is_visible(svc_name: str, svc, data: dict) -> bool:
    """The record's effect as anyone sees it through the service's API."""
    if svc_name == "registry":
        r = await svc.http.get("/institutions", params={"q": data["name"][:6]}, headers=auth("office_admin"))
        return any(i["uscc"] == data["uscc"] for i in r.json()["items"])
    r = await svc.http.get("/opportunities", params={"kind": "talent_demand"})
    return any(o["external_id"] == data["external_id"] for o in r.json()["items"])


@pytest.mark.parametrize(("topic", "name"), CASES)
async def test_the_documented_inbound_example_is_applied_by_its_real_handler(broker, topic, name):
    svc_name = _reader(topic)
    main = importlib.import_module(f"{svc_name}.main")
    settings = importlib.import_module(f"{svc_name}.config").Settings
    async with run_service(main.create_app, settings, broker=broker, db_url=await fresh_database(svc_name)) as svc:
        event_id, data = await _send_example(broker, topic, name)
        await wait_until(lambda: _recorded_as_processed(svc, event_id), timeout=30, what=f"{name} example applied")
        assert await _effect_is_visible(svc_name, svc, data)
        consumer = next(c for c in svc.consumers if topic in c.subscriptions)
        await consumer.wait_idle(15)
        assert consumer.stats.dead_lettered == 0, consumer.stats


async def test_an_industry_outside_the_vocabulary_is_dead_lettered_not_applied(broker):
    import matching.main
    from matching.config import Settings

    topic, name = "municipal.talent-demand.v1", "municipal.talent_demand.posted"
    async with run_service(matching.main.create_app, Settings, broker=broker,
                           db_url=await fresh_database("matching")) as svc:
        ext = f"unknown-industry-{uuid.uuid4().hex[:8]}"
        event_id, data = await _send_example(broker, topic, name, external_id=ext, industry="widgets")
        dlq = await read_topic(broker.bootstrap, f"{topic}.dlq", timeout=30, until=lambda rs: any(
            dict(r.headers).get("dlq.event_id") == event_id.encode() for r in rs))
        [letter] = [r for r in dlq if dict(r.headers).get("dlq.event_id") == event_id.encode()]
        assert "industry" in dict(letter.headers)["dlq.reason"].decode()
        assert not await _recorded_as_processed(svc, event_id)
        assert not await _effect_is_visible("matching", svc, data)


@pytest.mark.parametrize(("topic", "name"), CASES)
async def test_the_example_sent_in_binary_content_mode_by_the_official_sdk_is_applied_too(broker, topic, name):
    """The official SDKs' Kafka serialisers write the binding's binary content mode by default (attributes in ce_*
    headers, data as the value): accepted like the structured form, per the CloudEvents Kafka binding."""
    from cloudevents.v1.http import CloudEvent as SdkEvent
    from cloudevents.v1.kafka import to_binary

    svc_name = _reader(topic)
    main = importlib.import_module(f"{svc_name}.main")
    settings = importlib.import_module(f"{svc_name}.config").Settings
    example = DOC["components"]["messages"][name]["examples"][0]["payload"]
    suffix = uuid.uuid4().hex[:8]
    data = dict(example["data"])
    if svc_name == "registry":  # another enterprise than the example's (whose USCC the seeds also use)
        from registry.domain import uscc_check_char

        first17 = f"9131011{int(suffix, 16) % 10**10:010d}"
        data |= {"name": f"{data['name']}{suffix}", "uscc": first17 + uscc_check_char(first17)}
    else:
        data["external_id"] = f"{data['external_id']}-{suffix}"
    attributes = {k: v for k, v in example.items() if k != "data"} | {"id": f"binary-{uuid.uuid4()}"}
    message = to_binary(SdkEvent(attributes, data))
    async with run_service(main.create_app, settings, broker=broker, db_url=await fresh_database(svc_name)) as svc:
        await produce(broker.bootstrap, topic, [message.value], key=example["subject"].encode(),
                      headers=list(message.headers.items()))
        await wait_until(lambda: _recorded_as_processed(svc, attributes["id"]), timeout=30,
                         what=f"{name} in binary mode applied")
        assert await _effect_is_visible(svc_name, svc, data)
