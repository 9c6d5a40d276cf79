"""Traces across services: one registry write is one trace, through the outbox relay, the broker, matching's
projection, notify's consumer (its inbox row) and notify's webhook delivery, against the real broker and PostgreSQL."""

from __future__ import annotations

import orjson
import pytest
from cloudevents.v1.conversion import from_json as ce_from_json
from cloudevents.v1.http import CloudEvent as SdkCloudEvent
from opentelemetry.trace import SpanKind, StatusCode

import matching.main
import notify.main
import registry.main
from matching.config import Settings as MatchingSettings
from notify.config import Settings as NotifySettings
from registry.config import Settings as RegistrySettings
from services.notify.tests.integration.support import TEST_SETTINGS, HttpReceiver
from tests.support.harness import auth, fresh_database, read_topic, run_service, wait_until
from tests.support.tracing import in_memory_spans, trace_id_of, traceparent_of

pytestmark = pytest.mark.integration

OFFICE = auth("office_admin")
ENTERPRISE = {
    "kind": "enterprise", "name_zh": "上海华虹宏力半导体制造有限公司", "uscc": "91310000132214209T",
    "district": "pudong", "industries": ["integrated_circuits"], "contact_name": "李经理",
    "contact_phone": "13800000001", "contact_email": "li@example.cn",
}


async def test_a_registry_write_is_one_trace_through_matching_and_notify_to_the_webhook(broker):
    with in_memory_spans() as exporter, HttpReceiver(default=200) as receiver:
        async with (
            run_service(registry.main.create_app, RegistrySettings, broker=broker,
                        db_url=await fresh_database("registry")) as reg,
            run_service(matching.main.create_app, MatchingSettings, broker=broker,
                        db_url=await fresh_database("matching")) as mat,
            run_service(notify.main.create_app, NotifySettings, broker=broker,
                        db_url=await fresh_database("notify"), **TEST_SETTINGS,
                        digest_window_seconds=0.5, housekeeping_interval_seconds=0.1) as ntf,
        ):
            hook = await ntf.http.post("/webhooks", headers=OFFICE, json={
                "name": "portal", "url": receiver.url, "events": ["registry.institution.*"],
                "secret": "portal-secret-0000000001"})
            assert hook.status_code == 201, hook.text

            created = await reg.http.post("/institutions", json=ENTERPRISE, headers=OFFICE)
            assert created.status_code == 201, created.text
            inst = created.json()

            def spans(name: str, scope: str, kind: SpanKind | None = None, message_id: str | None = None):
                return [s for s in exporter.get_finished_spans()
                        if s.name == name and s.instrumentation_scope.name == scope
                        and (kind is None or s.kind is kind)
                        and (message_id is None or s.attributes.get("messaging.message.id") == message_id)]

            [server] = await wait_until(lambda: spans("POST /institutions", "cjrh.registry"),
                                        what="registry's server span")
            trace = trace_id_of(server)
            assert server.kind is SpanKind.SERVER and server.parent is None
            assert server.attributes["http.response.status_code"] == 201
            assert server.attributes["http.route"] == "/institutions"
            assert server.attributes["cjrh.correlation_id"] == created.headers["x-correlation-id"]

            # the event on the wire carries the request's context as the CloudEvents tracing extension
            records = await read_topic(broker.bootstrap, "registry.institution.v1",
                                       until=lambda rs: any(r.key == inst["id"].encode() for r in rs))
            [record] = [r for r in records if r.key == inst["id"].encode()]
            assert orjson.loads(record.value)["traceparent"] == traceparent_of(server)
            event = ce_from_json(SdkCloudEvent, record.value)
            assert event["traceparent"] == traceparent_of(server)

            def in_trace(name: str, scope: str, kind: SpanKind, message_id: str | None = None):
                return [s for s in spans(name, scope, kind, message_id) if trace_id_of(s) == trace]

            [publish] = await wait_until(
                lambda: in_trace("publish registry.institution.v1", "cjrh.registry", SpanKind.PRODUCER, event["id"]),
                what="the relay's publish span")
            assert publish.parent.span_id == server.context.span_id
            assert publish.attributes["messaging.kafka.message.key"] == inst["id"]
            assert "messaging.kafka.offset" in publish.attributes

            # matching's projection: a consumer span, child of the request, around the handler that applied it
            [projected] = await wait_until(
                lambda: in_trace("process registry.institution.v1", "cjrh.matching", SpanKind.CONSUMER, event["id"]),
                what="matching's consumer span")
            assert projected.parent.span_id == server.context.span_id
            assert projected.attributes["cloudevents.event_type"] == event["type"]
            assert (await mat.http.get(f"/institutions/{inst['id']}")).status_code == 200

            # notify's consumer queued the office's notice: platform chatter, listed in its inbox digest by event id
            [consumed] = await wait_until(
                lambda: in_trace("process registry.institution.v1", "cjrh.notify", SpanKind.CONSUMER, event["id"]),
                what="notify's consumer span")
            assert consumed.parent.span_id == server.context.span_id

            async def in_office_digest():
                items = (await ntf.http.get("/inbox", headers=OFFICE)).json()["items"]
                return [i["event_id"] for m in items if m["event_type"] == "digest" for i in m["data"]["items"]
                        if i["event_id"] == event["id"]]
            assert await wait_until(in_office_digest, what="the office's inbox digest") == [event["id"]]

            # notify's delivery: a span of the same trace, whose context the webhook receiver got as traceparent
            [delivered] = await wait_until(
                lambda: in_trace("deliver webhook", "cjrh.notify", SpanKind.CLIENT),
                what="notify's delivery span")
            assert delivered.kind is SpanKind.CLIENT and delivered.parent.span_id == consumed.context.span_id
            assert delivered.attributes["cjrh.event_id"] == event["id"]
            assert delivered.status.status_code is not StatusCode.ERROR
            [call] = [r for r in receiver.requests if orjson.loads(r["body"])["id"] == event["id"]]
            assert call["headers"]["traceparent"] == traceparent_of(delivered)

            # and the delivery's status events are published within the trace too
            await wait_until(lambda: len(in_trace("publish notify.delivery.v1", "cjrh.notify",
                                                  SpanKind.PRODUCER)) >= 2,
                             what="the delivery events' publish spans (queued, delivered)")

            services = {s.instrumentation_scope.name for s in exporter.get_finished_spans()
                        if trace_id_of(s) == trace}
            assert services == {"cjrh.registry", "cjrh.matching", "cjrh.notify"}


async def test_spans_go_to_the_otlp_endpoint_named_by_the_standard_variable(monkeypatch):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from common import tracing
    from common.config import ServiceSettings

    with HttpReceiver(default=200) as collector:
        base = collector.url.rsplit("/", 1)[0]
        for name in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                     "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", base)
        try:
            assert tracing.configure(ServiceSettings(service_name="registry"))
            with tracing.span("registry", "a unit of work"):
                pass
            await tracing.flush()
        finally:
            tracing._provider.shutdown()
            tracing.use(None)
        [post] = [r for r in collector.requests if r["path"] == "/v1/traces"]
    headers = {k.lower(): v for k, v in post["headers"].items()}
    assert headers["content-type"] == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(post["body"])
    [resource_spans] = request.resource_spans
    attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert attributes["service.name"] == "registry"
    assert [s.name for ss in resource_spans.scope_spans for s in ss.spans] == ["a unit of work"]
