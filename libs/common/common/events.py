"""The event envelope: CloudEvents 1.0 in structured JSON mode, and typed event contracts per topic."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from common import tracing
from common.context import correlation_id_var

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
TRACE_ATTRIBUTE_MAX = 512  # W3C: a traceparent is 55 characters (version 00); tracestate is kept up to 512

P = TypeVar("P", bound=BaseModel)


# The header prefix of CloudEvents attributes in the binding's binary content mode (ce_id, ce_type, ...).
BINARY_PREFIX = "ce_"


class MalformedEvent(ValueError):
    """The bytes are not a CloudEvent this platform understands (bad JSON, bad envelope, bad payload)."""


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event; `id` is the idempotency key, `correlationid` an extension carried end to end, and
    `traceparent`/`tracestate` the distributed-tracing extension (the W3C context of the span that created it)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: str = "1.0"
    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=500)
    type: str = Field(min_length=1, max_length=300)
    subject: str | None = Field(default=None, max_length=500)
    time: datetime
    datacontenttype: str = "application/json"
    dataschema: str | None = None
    correlationid: str | None = Field(default=None, max_length=200)
    traceparent: str | None = None
    tracestate: str | None = None
    data: Any = None

    @field_validator("traceparent", "tracestate", mode="before")
    @classmethod
    def _advisory(cls, value: Any) -> str | None:
        """Trace context is advisory: a malformed value is dropped, never a reason to refuse (dead-letter) an event."""
        return value if isinstance(value, str) and 0 < len(value) <= TRACE_ATTRIBUTE_MAX else None

    def to_bytes(self) -> bytes:
        """Serialise in structured JSON mode."""
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def from_bytes(cls, raw: bytes) -> CloudEvent:
        """Parse structured-mode JSON, raising MalformedEvent with a readable reason on any defect."""
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedEvent(f"not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise MalformedEvent(f"a CloudEvent must be a JSON object, got {type(doc).__name__}")
        if doc.get("specversion") != "1.0":
            raise MalformedEvent(f"unsupported specversion {doc.get('specversion')!r} (expected '1.0')")
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            raise MalformedEvent(f"invalid CloudEvent envelope: {brief_errors(exc)}") from exc

    @classmethod
    def from_record(cls, value: bytes | None, headers: Iterable[tuple[str, bytes]] | None) -> CloudEvent:
        """Parse a Kafka record in either content mode of the CloudEvents Kafka binding: structured (the JSON event is
        the value; what the platform writes) or binary (each attribute in a `ce_<name>` header, the data as the value,
        its media type in `content-type`; what the official SDKs' Kafka serialisers write by default)."""
        attributes: dict[str, Any] = {}
        content_type = None
        for name, raw in headers or ():
            key = name.lower()
            if key != "content-type" and not key.startswith(BINARY_PREFIX):
                continue
            try:
                text = raw.decode("utf-8") if raw is not None else None
            except UnicodeDecodeError as exc:
                raise MalformedEvent(f"header {name!r} is not UTF-8 text") from exc
            if key == "content-type":
                content_type = text
            else:
                attributes[key.removeprefix(BINARY_PREFIX)] = text
        if "specversion" not in attributes:  # structured mode
            if value is None:
                raise MalformedEvent("empty message (tombstone) where a CloudEvent was expected")
            return cls.from_bytes(value)
        if attributes["specversion"] != "1.0":
            raise MalformedEvent(f"unsupported specversion {attributes['specversion']!r} (expected '1.0')")
        if "data" in attributes:
            raise MalformedEvent("a binary-mode event carries its data in the record's value, not a ce_data header")
        content_type = content_type or "application/json"
        if value is not None and not _is_json(content_type):
            raise MalformedEvent(f"binary-mode data of type {content_type!r}: this platform's events carry JSON data")
        try:
            data = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError as exc:
            raise MalformedEvent(f"binary-mode data is not valid JSON: {exc}") from exc
        try:
            return cls.model_validate({**attributes, "datacontenttype": content_type, "data": data})
        except ValidationError as exc:
            raise MalformedEvent(f"invalid CloudEvent attributes: {brief_errors(exc)}") from exc


def _is_json(media_type: str) -> bool:
    """Whether a media type is JSON (application/json, text/json, or any +json suffix), parameters aside."""
    essence = media_type.split(";", 1)[0].strip().lower()
    return essence in ("application/json", "text/json") or essence.endswith("+json")


def brief_errors(exc: ValidationError) -> str:
    """A one-line summary of a pydantic validation error: where and what, never the (possibly huge) input."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


@dataclass(frozen=True)
class EventContract(Generic[P]):
    """One event type on one topic with its payload schema: what the producer promises and consumers rely on."""

    topic: str
    name: str
    payload: type[P]
    description: str = ""

    def type_for(self, prefix: str) -> str:
        """The CloudEvents `type`, e.g. cn.gov.sh.cjrh.registry.institution.registered."""
        return f"{prefix}.{self.name}"

    def parse(self, event: CloudEvent) -> P:
        """Validate the event's data against this contract's payload model."""
        try:
            return self.payload.model_validate(event.data)
        except ValidationError as exc:
            raise MalformedEvent(f"payload does not match {self.name}: {brief_errors(exc)}") from exc


def new_event(
    *, contract: EventContract, payload: BaseModel, source: str, type_prefix: str, subject: str,
    event_id: str | None = None, correlation_id: str | None = None,
) -> CloudEvent:
    """Build a CloudEvent for a contract, carrying the current correlation id (unless one is given) and the current
    span's trace context (when tracing is on)."""
    return CloudEvent(
        id=event_id or str(uuid.uuid4()),
        source=source,
        type=contract.type_for(type_prefix),
        subject=subject,
        time=datetime.now(UTC),
        correlationid=correlation_id or correlation_id_var.get() or None,
        data=payload.model_dump(mode="json"),
        **tracing.current_context(),
    )


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic that receives what a consumer of `topic` cannot process."""
    return f"{topic}.dlq"
