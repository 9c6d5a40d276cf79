"""Tracing: off unless the standard OTEL_* variables configure it; spans continue the W3C context they are given."""

from __future__ import annotations

import io
import json
import logging
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.trace import SpanKind, StatusCode

from common import tracing
from common.config import ServiceSettings
from common.events import CloudEvent
from common.observability import HttpMiddleware, configure_logging
from tests.support.tracing import in_memory_spans, trace_id_of, traceparent_of

pytestmark = pytest.mark.unit

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
CALLER_TRACE = CALLER.split("-")[1]
OTEL = ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES")


@pytest.fixture
def otel_env(monkeypatch):
    """A clean OTEL_* environment; tracing is switched off again afterwards."""
    for name in OTEL:
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    if tracing._provider is not None:
        tracing._provider.shutdown()
    tracing.use(None)


@pytest.mark.parametrize("env, exporters", [
    ({}, []),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318"}, ["otlp"]),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://otel-collector:4318/v1/traces"}, ["otlp"]),
    ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
    ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["otlp", "console"]),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318"}, []),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318"}, []),
])
def test_tracing_is_off_unless_the_standard_variables_ask_for_it(otel_env, env, exporters):
    for name, value in env.items():
        otel_env.setenv(name, value)
    assert tracing.exporters_for(ServiceSettings()) == exporters


def test_an_exporter_this_platform_does_not_ship_is_refused_at_startup(otel_env):
    otel_env.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ValueError, match="zipkin not supported"):
        tracing.exporters_for(ServiceSettings())


def test_unconfigured_tracing_installs_nothing_and_its_hooks_do_nothing(otel_env):
    assert tracing.configure(ServiceSettings(service_name="registry")) is False
    assert not tracing.enabled and tracing._provider is None
    assert tracing.describe().startswith("tracing off")
    ev = CloudEvent(id="1", source="s", type="t", time="2026-01-01T00:00:00Z", traceparent=CALLER)
    with tracing.consuming(ev, SimpleNamespace(topic="t", partition=0, offset=1), service="x", group="g") as span:
        assert span is None
    assert tracing.current_context() == {} and tracing.log_ids() == (None, None)


def test_configured_tracing_names_the_service_unless_otel_service_name_does(otel_env):
    otel_env.setenv("OTEL_TRACES_EXPORTER", "console")
    assert tracing.configure(ServiceSettings(service_name="registry")) is True
    assert tracing._provider.resource.attributes["service.name"] == "registry"
    assert tracing.describe() == "tracing on: console spans as service registry"
    tracing._provider.shutdown()
    tracing.use(None)
    otel_env.setenv("OTEL_SERVICE_NAME", "cjrh-registry-prod")
    tracing.configure(ServiceSettings(service_name="registry"))
    assert tracing._provider.resource.attributes["service.name"] == "cjrh-registry-prod"


def test_a_consumer_span_is_a_child_of_the_context_its_event_carries():
    msg = SimpleNamespace(topic="registry.institution.v1", partition=2, offset=41)
    carried = CloudEvent(id="e1", source="//p/registry", type="cn.a.registry.institution.registered", subject="i1",
                         time="2026-01-01T00:00:00Z", correlationid="c1", traceparent=CALLER)
    bare = CloudEvent(id="e2", source="//p/municipal", type="cn.a.municipal.enterprise.reported",
                      time="2026-01-01T00:00:00Z")
    with in_memory_spans() as exporter:
        for ev in (carried, bare):
            with tracing.consuming(ev, msg, service="matching", group="matching.registry-projection"):
                pass
    child, root = exporter.get_finished_spans()
    assert child.kind is SpanKind.CONSUMER and child.name == "process registry.institution.v1"
    assert trace_id_of(child) == CALLER_TRACE and child.parent.span_id == int(CALLER.split("-")[2], 16)
    assert child.attributes["messaging.message.id"] == "e1" and child.attributes["messaging.kafka.offset"] == 41
    assert child.attributes["cjrh.correlation_id"] == "c1"
    assert root.parent is None and trace_id_of(root) != CALLER_TRACE


def test_publish_spans_continue_each_stored_event_and_record_what_the_broker_answered():
    ok = CloudEvent(id="e1", source="s", type="t", time="2026-01-01T00:00:00Z", traceparent=CALLER).to_bytes()
    rows = [{"topic": "registry.institution.v1", "key": "i1", "payload": ok},
            {"topic": "registry.institution.v1", "key": "i2", "payload": b"{not json"}]
    with in_memory_spans() as exporter:
        spans = tracing.publishing("registry", rows)
        tracing.published(spans, [SimpleNamespace(partition=1, offset=7), TimeoutError("no ack")])
    sent, refused = exporter.get_finished_spans()
    assert sent.kind is SpanKind.PRODUCER and trace_id_of(sent) == CALLER_TRACE
    assert sent.attributes["messaging.message.id"] == "e1" and sent.attributes["messaging.kafka.offset"] == 7
    assert refused.parent is None and refused.status.status_code is StatusCode.ERROR


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict:
        logging.getLogger("test.app").info("reading %s", thing_id)
        return {"id": thing_id}

    @app.get("/broken")
    async def broken() -> dict:
        raise RuntimeError("boom")

    app.add_middleware(HttpMiddleware, service="demo", max_body_bytes=1000)
    app.add_middleware(tracing.TracingMiddleware, service="demo")
    return app


async def test_a_request_is_a_server_span_named_by_its_route_that_continues_the_callers_traceparent():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(), raise_app_exceptions=False),
                                 base_url="http://demo") as http:
        with in_memory_spans() as exporter:
            r = await http.get("/things/t-1", headers={"traceparent": CALLER, "x-correlation-id": "corr-9"})
            assert r.status_code == 200
            assert (await http.get("/broken")).status_code == 500
    read, broken = exporter.get_finished_spans()
    assert read.kind is SpanKind.SERVER and read.name == "GET /things/{thing_id}"
    assert trace_id_of(read) == CALLER_TRACE and read.parent.is_remote
    assert read.attributes["http.response.status_code"] == 200 and read.attributes["cjrh.correlation_id"] == "corr-9"
    assert broken.parent is None and broken.status.status_code is StatusCode.ERROR


async def test_log_records_carry_the_trace_and_span_ids_while_a_span_is_active_and_keep_the_correlation_id():
    out = io.StringIO()
    configure_logging(service="demo", json_logs=True)
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_cjrh", False))
    handler.setStream(out)
    try:
        logging.getLogger("test.plain").warning("outside any span")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://demo") as http:
            with in_memory_spans() as exporter:
                await http.get("/things/t-2", headers={"x-correlation-id": "corr-7"})
    finally:
        logging.getLogger().removeHandler(handler)
    [span] = exporter.get_finished_spans()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    outside = next(rec for rec in lines if rec["message"] == "outside any span")
    inside = next(rec for rec in lines if rec["message"] == "reading t-2")
    assert outside["trace_id"] is None and outside["span_id"] is None
    assert inside["correlation_id"] == "corr-7"
    assert f"00-{inside['trace_id']}-{inside['span_id']}-" in traceparent_of(span)
