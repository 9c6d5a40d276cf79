"""OpenTelemetry tracing: one trace follows a request from its HTTP call through the outbox, the broker, every consumer
and notify's deliveries.

Off unless configured by OpenTelemetry's standard variables: OTEL_TRACES_EXPORTER (`otlp`, `console`, `none`) or an
OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) turns it on, OTEL_SDK_DISABLED=true
keeps it off; the SDK reads the rest itself (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER,
OTEL_EXPORTER_OTLP_HEADERS, OTEL_BSP_*). When off, the SDK is not even imported, no middleware is installed, and each
hook below costs one check of `enabled`.

How a trace crosses the broker: an event carries the W3C context of the span that created it (the request's server
span, or a consumer's span) in the CloudEvents distributed-tracing extension, as the top-level attributes `traceparent`
and `tracestate` of the structured event, so the outbox row needs no column of its own. The relay's send of a row is a
PRODUCER span and each consumer's handling of an event a CONSUMER span, both children of that creation context.

Child rather than link: every event has exactly one creation context, and each consumer handles each event on its own
(one handler call per event, even inside a batch's transaction), so a parent-child edge is exact, and it keeps a
request and everything it caused in one trace, which is what an operator following a registration wants to open.
A link would put each consumer's work in a trace of its own, joined only by references. (Messaging conventions
recommend links for spans that cover many messages at once; none of ours does.)

Notify keeps the context of its consumer span with the notification and each delivery (inside their JSON columns), so
the dispatcher's send attempts, however late, are spans of the same trace, and so are the delivery events it publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

EXPORTERS = ("otlp", "console")
W3C = TraceContextTextMapPropagator()
TRACE = "trace"  # the key under which notify keeps a stored W3C context in its JSON columns

enabled = False  # read as `tracing.enabled` on the hot paths
_provider: Any = None  # the SDK's TracerProvider while enabled
_tracers: dict[str, Tracer] = {}
_described = ""
_NOTHING = contextlib.nullcontext()  # stateless: shared by every caller while tracing is off


# --- configuration ------------------------------------------------------------------------------------------------

def exporters_for(settings: Any) -> list[str]:
    """The span exporters the OTEL_* settings ask for: none (tracing off) unless an exporter or endpoint is set."""
    if settings.otel_sdk_disabled:
        return []
    names = [n.strip().lower() for n in settings.otel_traces_exporter.split(",") if n.strip()]
    if not names:
        configured = settings.otel_exporter_otlp_endpoint or settings.otel_exporter_otlp_traces_endpoint
        return ["otlp"] if configured else []
    unknown = sorted(set(names) - {*EXPORTERS, "none"})
    if unknown:
        raise ValueError(f"OTEL_TRACES_EXPORTER={settings.otel_traces_exporter!r}: {', '.join(unknown)} not supported "
                         f"here; use {', '.join(EXPORTERS)} or none")
    return [n for n in names if n != "none"]


def configure(settings: Any) -> bool:
    """Start tracing for this process if the OTEL_* settings ask for it (the first call decides); True when on."""
    global _described
    if _provider is not None:
        return True
    names = exporters_for(settings)
    if not names:
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create()  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, name the service
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: settings.service_name}))
    provider = TracerProvider(resource=resource)
    for name in names:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    use(provider)
    _described = f"{'+'.join(names)} spans as service {resource.attributes.get(SERVICE_NAME)}"
    return True


def describe() -> str:
    """A line for the service's log at startup: whether tracing is on, and where spans go."""
    if not enabled:
        return "tracing off (no OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER)"
    return f"tracing on: {_described or 'spans to ' + type(_provider).__name__}"


def use(provider: Any) -> None:
    """Send spans to this TracerProvider, or switch tracing off with None (tests pass an in-memory exporter's)."""
    global _provider, enabled, _described
    _provider = provider
    _described = ""
    _tracers.clear()
    enabled = provider is not None


async def flush(timeout_millis: int = 5000) -> None:
    """Export the spans still buffered (at shutdown), off the event loop."""
    if _provider is not None:
        await asyncio.to_thread(_provider.force_flush, timeout_millis)


def _tracer(service: str) -> Tracer:
    tracer = _tracers.get(service)
    if tracer is None:
        tracer = _tracers[service] = _provider.get_tracer(f"cjrh.{service}")
    return tracer


# --- carrying the context -----------------------------------------------------------------------------------------

def current_context() -> dict[str, str]:
    """The current span's W3C context (`traceparent`, and `tracestate` if any): for a new event's extension
    attributes or an outgoing request's headers; empty when tracing is off or no span is active."""
    if not enabled:
        return {}  # a plain dict: `**` over it is the interpreter's fast path (a mapping proxy cost 0.35 us)
    carrier: dict[str, str] = {}
    W3C.inject(carrier)
    return carrier


def _parent(carrier: Mapping[str, str] | None) -> otel_context.Context:
    """The context a stored or received W3C carrier continues; an empty one (a new trace) when there is none."""
    return W3C.extract(carrier) if carrier else otel_context.Context()


def _event_carrier(event: Any) -> dict[str, str] | None:
    if not event.traceparent:
        return None
    carrier = {"traceparent": event.traceparent}
    if event.tracestate:
        carrier["tracestate"] = event.tracestate
    return carrier


def log_ids() -> tuple[str | None, str | None]:
    """The active span's trace id and span id in hex, for log records; (None, None) when there is none."""
    if not enabled:
        return None, None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


# --- HTTP ---------------------------------------------------------------------------------------------------------

class TracingMiddleware:
    """Pure-ASGI middleware, outermost, installed only while tracing is on: a SERVER span per HTTP request that
    continues the caller's `traceparent` header, named by method and route template once routing has run."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not enabled:
            await self.app(scope, receive, send)
            return
        carrier = {}
        for name, value in scope.get("headers") or ():
            if name == b"traceparent" or name == b"tracestate":
                carrier[name.decode()] = value.decode("latin-1")
        method = scope.get("method", "")
        attributes = {"http.request.method": method, "url.path": scope.get("path", ""),
                      "url.scheme": scope.get("scheme", "http")}
        if scope.get("client"):
            attributes["client.address"] = scope["client"][0]
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers") or ():
                    if name == b"x-correlation-id":
                        span.set_attribute("cjrh.correlation_id", value.decode("latin-1"))
            await send(message)

        with _tracer(self.service).start_as_current_span(
            method, context=_parent(carrier), kind=SpanKind.SERVER, attributes=attributes,
        ) as span:
            try:
                await self.app(scope, receive, observed_send)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(StatusCode.ERROR)


# --- the outbox relay ---------------------------------------------------------------------------------------------

def publishing(service: str, rows: Sequence[Mapping[str, Any]]) -> list[Span]:
    """A PRODUCER span per outbox row about to be sent, each a child of the context its stored event carries."""
    tracer = _tracer(service)
    spans = []
    for row in rows:
        try:
            doc = orjson.loads(row["payload"])
        except orjson.JSONDecodeError:
            doc = {}
        carrier = {k: doc[k] for k in ("traceparent", "tracestate") if isinstance(doc.get(k), str)}
        spans.append(tracer.start_span(f"publish {row['topic']}", context=_parent(carrier), kind=SpanKind.PRODUCER,
                                       attributes={
                                           "messaging.system": "kafka", "messaging.operation.type": "send",
                                           "messaging.operation.name": "publish",
                                           "messaging.destination.name": row["topic"],
                                           "messaging.kafka.message.key": row["key"],
                                           "messaging.message.id": str(doc.get("id", "")),
                                       }))
    return spans


def published(spans: Sequence[Span], results: Sequence[Any]) -> None:
    """End the publish spans with the broker's answer to each: its partition and offset, or the error."""
    for span, result in zip(spans, results):
        if isinstance(result, BaseException):
            span.record_exception(result)
            span.set_status(StatusCode.ERROR, repr(result)[:200])
        elif result is not None:
            span.set_attribute("messaging.destination.partition.id", str(result.partition))
            span.set_attribute("messaging.kafka.offset", result.offset)
        span.end()


# --- consumers and later work -------------------------------------------------------------------------------------

def consuming(event: Any, msg: Any, *, service: str, group: str) -> contextlib.AbstractContextManager:
    """A CONSUMER span around one event's handling, a child of the context the event carries (a new trace if none)."""
    if not enabled:
        return _NOTHING
    attributes = {
        "messaging.system": "kafka", "messaging.operation.type": "process", "messaging.operation.name": "process",
        "messaging.destination.name": msg.topic, "messaging.consumer.group.name": group,
        "messaging.destination.partition.id": str(msg.partition), "messaging.kafka.offset": msg.offset,
        "messaging.message.id": event.id, "cloudevents.event_id": event.id, "cloudevents.event_type": event.type,
        "cloudevents.event_source": event.source,
    }
    if event.subject:
        attributes["cloudevents.event_subject"] = event.subject
    if event.correlationid:
        attributes["cjrh.correlation_id"] = event.correlationid
    return _tracer(service).start_as_current_span(
        f"process {msg.topic}", context=_parent(_event_carrier(event)), kind=SpanKind.CONSUMER, attributes=attributes)


def span(service: str, name: str, *, carrier: Mapping[str, str] | None = None, kind: SpanKind = SpanKind.INTERNAL,
         attributes: Mapping[str, Any] | None = None) -> contextlib.AbstractContextManager:
    """A span continuing a stored W3C context (a delivery's, say); yields None when tracing is off."""
    if not enabled:
        return _NOTHING
    return _tracer(service).start_as_current_span(name, context=_parent(carrier), kind=kind, attributes=attributes)


def resumed(carrier: Mapping[str, str] | None) -> contextlib.AbstractContextManager:
    """Make a stored W3C context current without a span of its own, so that events staged meanwhile carry it."""
    if not enabled or not carrier:
        return _NOTHING
    return _attached(W3C.extract(carrier))


@contextlib.contextmanager
def _attached(ctx: otel_context.Context) -> Iterator[None]:
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


def failed(span: Span | None, reason: str | None) -> None:
    """Mark a span (if any) as failed with a reason."""
    if span is not None:
        span.set_status(StatusCode.ERROR, (reason or "failed")[:200])
