"""The CloudEvents envelope: structured JSON that the official SDK reads, and clear reasons for bad bytes."""

from __future__ import annotations

import orjson
import pytest
from cloudevents.v1.conversion import from_json, to_structured
from cloudevents.v1.http import CloudEvent as SdkEvent
from pydantic import BaseModel

from common import tracing
from common.context import correlation_id_var
from common.events import CloudEvent, EventContract, MalformedEvent, dead_letter_topic, new_event
from tests.support.tracing import in_memory_spans, traceparent_of

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


CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_an_event_built_inside_a_span_carries_its_trace_context_as_the_cloudevents_tracing_extension():
    caller = {"traceparent": CALLER, "tracestate": "cjrh=portal"}
    with in_memory_spans() as exporter, tracing.span("demo", "request", carrier=caller) as span:
        ev = new_event(contract=THING_MADE, payload=Thing(id="t1", size=3), source="//x/demo", type_prefix="cn.a",
                       subject="t1")
    [finished] = exporter.get_finished_spans()
    assert finished.context.trace_id == int(CALLER.split("-")[1], 16)
    raw = ev.to_bytes()
    wire = orjson.loads(raw)
    assert wire["traceparent"] == traceparent_of(span) and wire["tracestate"] == "cjrh=portal"  # top-level attributes
    assert CloudEvent.from_bytes(raw) == ev
    sdk = from_json(SdkEvent, raw)
    assert sdk["traceparent"] == wire["traceparent"] and sdk["tracestate"] == "cjrh=portal"
    _, body = to_structured(sdk)  # and what the SDK writes back, we read
    assert CloudEvent.from_bytes(body).traceparent == wire["traceparent"]


def test_without_tracing_an_event_has_no_trace_attributes():
    ev = new_event(contract=THING_MADE, payload=Thing(id="t1", size=3), source="//x/demo", type_prefix="cn.a",
                   subject="t1")
    assert "traceparent" not in orjson.loads(ev.to_bytes()) and ev.tracestate is None


@pytest.mark.parametrize("value", [42, "", "x" * 513, {"traceparent": CALLER}])
def test_a_malformed_trace_attribute_is_dropped_and_the_event_still_accepted(value):
    raw = orjson.dumps({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "time": "2026-01-01T00:00:00Z",
                        "traceparent": value, "tracestate": value, "data": {}})
    ev = CloudEvent.from_bytes(raw)
    assert ev.id == "1" and ev.traceparent is None and ev.tracestate is None


def test_every_topic_has_a_dead_letter_topic():
    assert dead_letter_topic("registry.institution.v1") == "registry.institution.v1.dlq"


# --- the binding's binary content mode (what the SDKs' Kafka serialisers write by default) ----------------------

def _sdk_binary(data: dict, **attributes) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    from cloudevents.v1.kafka import to_binary

    event = SdkEvent({"type": "cn.gov.sh.rsj.talent_demand.posted", "source": "//rsj.sh.gov.cn/talent-demand",
                      "id": "td-1", "time": "2026-05-01T08:00:00+08:00", "subject": "td-1",
                      "datacontenttype": "application/json", **attributes}, data)
    message = to_binary(event)
    return message.value, [(k, v) for k, v in message.headers.items()]


def test_a_binary_mode_record_from_the_official_sdk_is_the_same_event_as_its_structured_form():
    value, headers = _sdk_binary({"external_id": "td-1", "headcount": 3}, traceparent="00-" + "a" * 32 + "-" + "b" * 16
                                 + "-01")
    ev = CloudEvent.from_record(value, headers)
    assert (ev.id, ev.type, ev.source, ev.subject) == ("td-1", "cn.gov.sh.rsj.talent_demand.posted",
                                                       "//rsj.sh.gov.cn/talent-demand", "td-1")
    assert ev.data == {"external_id": "td-1", "headcount": 3} and ev.time.utcoffset().total_seconds() == 8 * 3600
    assert ev.traceparent.startswith("00-aaaa")
    structured = CloudEvent.from_record(ev.to_bytes(), [("content-type", b"application/cloudevents+json")])
    assert structured == ev


@pytest.mark.parametrize(("change", "reason"), [
    ({"ce_specversion": b"0.3"}, "unsupported specversion"),
    ({"content-type": b"application/xml"}, "carry JSON data"),
    ({"ce_id": b"\xff\xfe"}, "not UTF-8"),
    ({"ce_time": b"yesterday"}, "invalid CloudEvent attributes"),
])
def test_a_bad_binary_mode_record_has_a_clear_reason(change, reason):
    value, headers = _sdk_binary({"external_id": "td-1"})
    headers = [(k, change.get(k, v)) for k, v in headers] + [(k, v) for k, v in change.items()
                                                              if k not in dict(headers)]
    with pytest.raises(MalformedEvent, match=reason):
        CloudEvent.from_record(value, headers)


def test_binary_mode_data_must_be_json_and_a_structured_tombstone_is_refused():
    _, headers = _sdk_binary({"x": 1})
    with pytest.raises(MalformedEvent, match="not valid JSON"):
        CloudEvent.from_record(b"{not json", headers)
    with pytest.raises(MalformedEvent, match="tombstone"):
        CloudEvent.from_record(None, [])
