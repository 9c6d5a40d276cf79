"""Tracing's cost on the hot paths, in CPU microseconds per operation: off (what every deployment without OTEL_*
pays) beside the same operation without the hook, and on (a real SDK provider, batch export to an exporter that drops
everything) beside off.

Measured with process time, best of several rounds, so other processes on the machine count for little.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import orjson
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from pydantic import BaseModel, create_model

from bench.support import BenchContext, table
from common import tracing
from common.context import correlation_id_var
from common.events import CloudEvent, EventContract, new_event
from common.observability import HttpMiddleware

ROUNDS = 7
N = 20_000
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Institution(BaseModel):
    id: str
    name_zh: str
    district: str
    version: int


REGISTERED = EventContract("registry.institution.v1", "registry.institution.registered", Institution)
PAYLOAD = Institution(id="i-1", name_zh="上海临港经济发展（集团）有限公司", district="lingang", version=1)


# The envelope as it was before tracing (no traceparent/tracestate fields): the baseline of parsing.
_UNTRACED_FIELDS = {name: (f.annotation, f) for name, f in CloudEvent.model_fields.items()
                    if name not in ("traceparent", "tracestate")}
_Untraced = create_model("Untraced", __config__=CloudEvent.model_config, **_UNTRACED_FIELDS)


class _Drop(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS


def _cpu_us(fn, n: int = N) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, time.process_time() - started)
    return best / n * 1e6


async def _cpu_us_async(fn, n: int = N // 10) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(n):
            await fn()
        best = min(best, time.process_time() - started)
    return best / n * 1e6


def _event_without_hook() -> CloudEvent:
    """new_event as it was before tracing: the baseline of the hook's cost."""
    return CloudEvent(id=str(uuid.uuid4()), source="//p/registry", type=REGISTERED.type_for("cn.gov.sh.cjrh"),
                      subject="i-1", time=datetime.now(UTC), correlationid=correlation_id_var.get() or None,
                      data=PAYLOAD.model_dump(mode="json"))


def _event() -> CloudEvent:
    return new_event(contract=REGISTERED, payload=PAYLOAD, source="//p/registry", type_prefix="cn.gov.sh.cjrh",
                     subject="i-1")


def _app(traced: bool) -> FastAPI:
    app = FastAPI()

    @app.get("/institutions/{institution_id}")
    async def read(institution_id: str) -> dict:
        return {"id": institution_id}

    app.add_middleware(HttpMiddleware, service="bench", max_body_bytes=1000)
    if traced:
        app.add_middleware(tracing.TracingMiddleware, service="bench")
    return app


def _request(app: FastAPI):
    scope = {"type": "http", "method": "GET", "path": "/institutions/i-1", "raw_path": b"/institutions/i-1",
             "query_string": b"", "headers": [(b"host", b"bench")], "scheme": "http", "http_version": "1.1",
             "server": ("bench", 80), "client": ("127.0.0.1", 1), "root_path": "", "app": app}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    async def one():
        await app(dict(scope), receive, send)
    return one


async def run(ctx: BenchContext) -> dict:
    """Print and return the per-operation costs."""
    assert not tracing.enabled, "run the benchmark without OTEL_* variables"
    carried = CloudEvent.from_bytes(_event().to_bytes().replace(b'"data"', f'"traceparent":"{TRACEPARENT}","data"'
                                                                .encode()))
    msg = type("Msg", (), {"topic": "registry.institution.v1", "partition": 0, "offset": 1})
    raw = _event().to_bytes()
    rows = [{"topic": "registry.institution.v1", "key": "i-1", "payload": carried.to_bytes()}]
    acked = type("Ack", (), {"partition": 0, "offset": 1})

    def handle():
        with tracing.consuming(carried, msg, service="bench", group="bench.g"):
            pass

    def handle_without_hook():
        pass

    def publish():
        tracing.published(tracing.publishing("bench", rows), [acked])

    off = {
        "build an event": (_cpu_us(_event_without_hook), _cpu_us(_event)),
        "parse an event": (_cpu_us(lambda: _Untraced.model_validate(orjson.loads(raw))),
                           _cpu_us(lambda: CloudEvent.model_validate(orjson.loads(raw)))),
        "consumer hook per event": (_cpu_us(handle_without_hook), _cpu_us(handle)),
        "HTTP request (in-process ASGI)": (None, await _cpu_us_async(_request(_app(False)))),
    }
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Drop()))
    tracing.use(provider)
    try:
        with tracing.span("bench", "request"):
            built_on = _cpu_us(_event)
        on = {
            "build an event": built_on,
            "consumer hook per event": _cpu_us(handle, N // 4),
            "publish span per event": _cpu_us(publish, N // 4),
            "HTTP request (in-process ASGI)": await _cpu_us_async(_request(_app(True))),
        }
    finally:
        tracing.use(None)
        provider.shutdown()
    rows_out, result = [], {}
    for what in ("build an event", "parse an event", "consumer hook per event", "publish span per event",
                 "HTTP request (in-process ASGI)"):
        baseline, now = off.get(what, (None, None))
        traced = on.get(what)
        rows_out.append((what, f"{baseline:.2f}" if baseline is not None else "-",
                         f"{now:.2f}" if now is not None else "-", f"{traced:.2f}" if traced is not None else "-"))
        result[what] = {"without_hook_us": baseline, "off_us": now, "on_us": traced}
    table(rows_out, ("CPU us per operation", "without the hook", "tracing off", "tracing on"))
    return result
