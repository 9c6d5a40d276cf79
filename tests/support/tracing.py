"""Tracing in tests: the SDK's in-memory exporter behind common.tracing, and helpers to read what it kept."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from common import tracing


@contextmanager
def in_memory_spans() -> Iterator[InMemorySpanExporter]:
    """Turn tracing on for the block, every finished span kept in memory; off again afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        yield exporter
    finally:
        tracing.use(None)
        provider.shutdown()


def trace_id_of(span: ReadableSpan) -> str:
    """A span's trace id in the hex form of a traceparent."""
    return format(span.context.trace_id, "032x")


def traceparent_of(span) -> str:
    """The W3C traceparent that names this span, with its flags (sampled, and random trace id in recent SDKs)."""
    ctx = span.get_span_context() if hasattr(span, "get_span_context") else span.context
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
