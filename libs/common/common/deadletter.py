"""What a consumer writes to `<topic>.dlq`: the original record with the reason in headers, or, when that copy would
be larger than a record may be, a bounded JSON envelope that describes the original (pure: no I/O)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from common.limits import (
    DEAD_LETTER_FIELD_BYTES,
    DEAD_LETTER_HEAD_BYTES,
    DEAD_LETTER_MAX_HEADERS,
    MAX_RECORD_BYTES,
)

ENVELOPE_FORMAT = "cjrh.dead-letter-envelope/1"
REASON_BYTES = 4000  # what the dlq.reason and dlq.trace headers keep (their tails for a trace)

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class DeadLetter:
    """One record for a dead-letter topic; `enveloped` when it describes the original instead of copying it."""

    key: bytes | None
    value: bytes | None
    headers: Headers
    enveloped: bool = False

    @property
    def size(self) -> int:
        """Its size on the wire as the producer counts it against `max_request_size` (batch overhead included)."""
        return record_size(self.key, self.value, self.headers)


def record_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """A one-record batch's size in bytes, as the producer and the broker measure it."""
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)


@dataclass(frozen=True)
class Original:
    """Where a record came from and what it carried (a ConsumerRecord has all of these)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp: int | None = None


def dead_letter_headers(
    *, original: Original, reason: str, consumer: str, event_id: str | None = None, trace: str | None = None,
    failed_at: datetime | None = None,
) -> Headers:
    """The `dlq.*` headers that say why and from where (see the DLQ_HEADERS of scripts/asyncapi.py)."""
    headers = [
        ("dlq.reason", reason.encode()[:REASON_BYTES]),
        ("dlq.consumer", consumer.encode()),
        ("dlq.original.topic", original.topic.encode()),
        ("dlq.original.partition", str(original.partition).encode()),
        ("dlq.original.offset", str(original.offset).encode()),
        ("dlq.failed_at", (failed_at or datetime.now(UTC)).isoformat().encode()),
    ]
    if event_id is not None:
        headers.append(("dlq.event_id", event_id.encode()))
    if trace:
        headers.append(("dlq.trace", trace.encode()[-REASON_BYTES:]))
    return headers


def letter_for(
    original: Original, *, reason: str, consumer: str, event_id: str | None = None, trace: str | None = None,
    limit: int = MAX_RECORD_BYTES,
) -> DeadLetter:
    """The original bytes, key and headers plus the `dlq.*` headers; an envelope if that would exceed `limit`."""
    ours = dead_letter_headers(original=original, reason=reason, consumer=consumer, event_id=event_id, trace=trace)
    copy = DeadLetter(original.key, original.value, [*original.headers, *ours])
    if copy.size <= limit:
        return copy
    return envelope_for(original, reason=reason, consumer=consumer, event_id=event_id, trace=trace,
                        why=f"a byte-for-byte copy would be {copy.size} bytes, over the {limit}-byte record limit")


def _bounded(raw: bytes, limit: int) -> dict:
    """Size, SHA-256 and at most `limit` leading bytes (base64) of a byte string."""
    return {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
            "base64": base64.b64encode(raw[:limit]).decode(), "truncated": len(raw) > limit}


def envelope_for(
    original: Original, *, reason: str, consumer: str, event_id: str | None = None, trace: str | None = None,
    why: str = "the original cannot be dead-lettered as it is",
) -> DeadLetter:
    """A bounded JSON description of the original: key, headers, coordinates, size, SHA-256, first bytes, reason."""
    value = original.value or b""
    head = value[:DEAD_LETTER_HEAD_BYTES]
    digest = hashlib.sha256(value).hexdigest()
    doc = {
        "format": ENVELOPE_FORMAT,
        "reason": reason[:REASON_BYTES],
        "enveloped_because": why,
        "consumer": consumer,
        "event_id": event_id,
        "original": {
            "topic": original.topic,
            "partition": original.partition,
            "offset": original.offset,
            "timestamp_ms": original.timestamp,
            "key": None if original.key is None else _bounded(original.key, DEAD_LETTER_FIELD_BYTES),
            "headers_count": len(original.headers),
            "headers": [{"key": k[:256], **_bounded(v or b"", DEAD_LETTER_FIELD_BYTES)}
                        for k, v in original.headers[:DEAD_LETTER_MAX_HEADERS]],
            "value": {
                "size": len(value), "sha256": digest, "is_null": original.value is None,
                "head_bytes": len(head), "head_base64": base64.b64encode(head).decode(),
                "head_text": head.decode("utf-8", errors="replace"),
            },
        },
    }
    key = original.key
    if key is not None and len(key) > DEAD_LETTER_FIELD_BYTES:  # keeps its partition only when it is small
        key = b"sha256:" + hashlib.sha256(key).hexdigest().encode()
    headers = dead_letter_headers(original=original, reason=reason, consumer=consumer, event_id=event_id,
                                  trace=trace)
    headers += [("dlq.envelope", b"1"), ("dlq.original.size", str(len(value)).encode()),
                ("dlq.original.sha256", digest.encode())]
    return DeadLetter(key, orjson.dumps(doc), headers, enveloped=True)
