"""The CloudEvents envelope: structured JSON that the official SDK reads, and clear reasons for bad bytes."""

from __future__ import annotations

import pytest
from cloudevents.v1.conversion import from_json
from cloudevents.v1.http import CloudEvent as SdkEvent
from pydantic import BaseModel

from common.context import correlation_id_var
from common.events import CloudEvent, EventContract, MalformedEvent, dead_letter_topic, new_event

pytestmark = pytest.mark.unit


class Thing(BaseModel):
    id: str
    size: int


THING_MADE = EventContract("demo.thing.v1", "demo.thing.made", Thing)


def test_an_event_round_trips_and_is_readable_by_the_official_sdk():
    token = correlation_id_var.set("corr-1")
    try:
        ev = new_event(contract=THING_MADE, payload=Thing(id="t1", size=3), source="//x/demo", type_prefix="cn.a",
                       subject="t1")
    finally:
        correlation_id_var.reset(token)
    raw = ev.to_bytes()
    assert CloudEvent.from_bytes(raw) == ev
    sdk = from_json(SdkEvent, raw)
    assert sdk["type"] == "cn.a.demo.thing.made" and sdk["id"] == ev.id and sdk["subject"] == "t1"
    assert sdk["correlationid"] == "corr-1"
    assert sdk.data == {"id": "t1", "size": 3}


@pytest.mark.parametrize("raw, reason", [
    (b"{", "not valid JSON"),
    (b'"a string"', "must be a JSON object"),
    (b'{"specversion": "0.3"}', "unsupported specversion"),
    (b'{"specversion": "1.0", "id": "", "source": "s", "type": "t", "time": "2026-01-01T00:00:00Z"}', "id"),
    (b'{"specversion": "1.0", "id": "1", "source": "s", "type": "t", "time": "yesterday"}', "time"),
])
def test_bytes_that_are_not_a_cloudevent_are_refused_with_a_reason(raw, reason):
    with pytest.raises(MalformedEvent, match=reason):
        CloudEvent.from_bytes(raw)


def test_a_payload_that_breaks_its_contract_is_malformed():
    ev = CloudEvent(id="1", source="s", type="cn.a.demo.thing.made", time="2026-01-01T00:00:00Z",
                    data={"id": "t", "size": "big"})
    with pytest.raises(MalformedEvent, match="size"):
        THING_MADE.parse(ev)


def test_every_topic_has_a_dead_letter_topic():
    assert dead_letter_topic("registry.institution.v1") == "registry.institution.v1.dlq"
