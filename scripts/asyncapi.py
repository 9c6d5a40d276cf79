#!/usr/bin/env python3
"""Generate the AsyncAPI 3.0 document of every topic from the services' own event contracts, and guard the schemas.

    python scripts/asyncapi.py                     write docs/asyncapi.yaml (exit 1 if a published schema breaks)
    python scripts/asyncapi.py --update-snapshot   and record additive schema changes in deploy/contracts/
    python scripts/asyncapi.py --check             exit 1 if the document or a snapshot is stale, a change breaks, or
                                                   a published or handled event type lacks a payload schema or example
    python scripts/asyncapi.py --reset-snapshot T  accept a breaking change to topic T (never released yet) on purpose

Sources, all read from code: every `EventContract` a service package declares at module level, alone or inside a
dict, list or tuple (topic, name, payload model, description), and each service's `ServiceSpec` (published topics,
consumer groups and the event types they subscribe to, strict inbound topics). Every published or handled type must
have a payload model and a valid example (from the model's `examples`, else generated from its schema). Payload
schemas come from pydantic (serialization mode: what is on the wire) and are wrapped in the CloudEvents 1.0
structured-mode envelope. Snapshots of every topic's payload schemas live in
deploy/contracts/<topic>.json: within a topic version a field may be added (optional), never removed, retyped or made
required; an event type may be added, never removed. A breaking change needs a new topic version (`...v2`).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import pkgutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOC_PATH = ROOT / "docs" / "asyncapi.yaml"
SNAPSHOT_DIR = ROOT / "deploy" / "contracts"
KAFKA_BINDING = "0.5.0"
EXAMPLE_TIME = "2026-03-02T08:30:00+08:00"
DLQ_HEADERS = {
    "dlq.reason": "why the consumer could not apply the message",
    "dlq.consumer": "the consumer group that gave up on it",
    "dlq.original.topic": "the topic the message was read from",
    "dlq.original.partition": "its partition",
    "dlq.original.offset": "its offset",
    "dlq.failed_at": "when it was dead-lettered (ISO 8601)",
    "dlq.event_id": "the CloudEvent id, when the bytes could be parsed",
    "dlq.trace": "the end of the handler's traceback, after repeated failures",
    "dlq.envelope": "`1` when the value is a bounded envelope describing the original (too large to copy)",
    "dlq.original.size": "envelopes only: the original value's size in bytes",
    "dlq.original.sha256": "envelopes only: the SHA-256 of the original value (hex)",
}

for _p in [ROOT / "libs" / "common", *sorted((ROOT / "services").glob("*"))]:
    if _p.is_dir() and str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from common.deadletter import ENVELOPE_FORMAT  # noqa: E402  (the paths above first)
from common.limits import (  # noqa: E402
    DEAD_LETTER_FIELD_BYTES,
    DEAD_LETTER_HEAD_BYTES,
    DEAD_LETTER_MAX_HEADERS,
    MAX_RECORD_BYTES,
)
from common.provenance import topic_owners  # noqa: E402

# --- reading the code -------------------------------------------------------------------------------------------

@dataclass
class Consumer:
    """One consumer group's interest in one topic."""

    service: str
    group: str
    topic: str
    types: list[str]
    strict: bool


@dataclass
class Platform:
    """What the code says about every service's events."""

    prefix: str
    version: str
    contracts: dict[str, list[Any]] = field(default_factory=dict)   # service -> EventContract objects it declares
    published: dict[str, list[str]] = field(default_factory=dict)   # service -> topics it publishes
    consumers: list[Consumer] = field(default_factory=list)


def service_names() -> list[str]:
    """The services in the repository (a folder under services/ with a pyproject.toml)."""
    return sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))


def find_spec(app: Any) -> Any:
    """The ServiceSpec a service's app was built from (kept on app.state by common.service)."""
    return app.state.spec


def _contracts_in(value: Any, kind: type, depth: int = 0) -> list[Any]:
    """EventContract objects in a module-level value: the value itself, or inside a dict, list or tuple."""
    if isinstance(value, kind):
        return [value]
    if depth > 2:
        return []
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [c for v in value for c in _contracts_in(v, kind, depth + 1)]
    return []


def declared_contracts(svc: str) -> list[Any]:
    """Every EventContract the service's package declares, in any of its modules, alone or in a collection."""
    from common.events import EventContract

    package = importlib.import_module(svc)
    found: dict[tuple[str, str], Any] = {}
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{svc}."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            for c in _contracts_in(value, EventContract):
                seen = found.setdefault((c.topic, c.name), c)
                if seen.payload is not c.payload:
                    raise ValueError(f"{svc} declares {c.name} on {c.topic} twice with different payloads")
    return sorted(found.values(), key=lambda c: (c.topic, c.name))


def read_platform() -> Platform:
    """Import every service's package and app factory and collect topics, contracts and consumers."""
    from common.config import ServiceSettings

    prefix = ServiceSettings.model_fields["event_type_prefix"].default
    plat = Platform(prefix=prefix, version="0.1.0")
    versions = []
    for svc in service_names():
        plat.contracts[svc] = declared_contracts(svc)
        # the app is built only to read its spec, with development settings (it never serves a request)
        settings = importlib.import_module(f"{svc}.config").Settings(dev_mode=True)
        spec = find_spec(importlib.import_module(f"{svc}.main").create_app(settings))
        versions.append(spec.version)
        plat.published[svc] = sorted(set(spec.published_topics))
        for c in spec.consumers:
            for sub in c.subscriptions:
                names = sorted(t[len(prefix) + 1:] if t.startswith(prefix + ".") else t for t in sub.handlers)
                plat.consumers.append(Consumer(svc, f"{svc}.{c.name}", sub.topic, names, sub.strict))
    plat.version = max(versions, key=lambda v: tuple(int(x) for x in v.split(".") if x.isdigit()))
    return plat


# --- JSON Schema helpers ----------------------------------------------------------------------------------------

def payload_schema(model: type, namespace: str) -> tuple[dict, dict]:
    """The payload model's JSON Schema (wire form) and its nested definitions, referenced under components/schemas."""
    schema = model.model_json_schema(mode="serialization", ref_template=f"#/components/schemas/{namespace}.{{model}}")
    defs = {f"{namespace}.{k}": v for k, v in schema.pop("$defs", {}).items()}
    return schema, defs


def resolve(schema: Any, components: dict) -> Any:
    """Inline every #/components/schemas reference (for comparing and validating a schema on its own)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            target = resolve(components[ref.rsplit("/", 1)[1]], components)
            rest = {k: resolve(v, components) for k, v in schema.items() if k != "$ref"}
            return {**target, **rest}
        return {k: resolve(v, components) for k, v in schema.items()}
    if isinstance(schema, list):
        return [resolve(v, components) for v in schema]
    return schema


def example_for(schema: dict, name: str = "") -> Any:
    """A deterministic example value for a (resolved) JSON Schema: examples, default, const, enum, then by type."""
    if schema.get("examples"):
        return schema["examples"][0]
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return example_for(options[0], name)
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return example_for(schema["allOf"][0], name)
    if "default" in schema and schema["default"] not in (None, [], {}):
        return schema["default"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return {k: example_for(v, k) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [example_for(schema.get("items", {}), name)] * max(1, schema.get("minItems", 1))
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return float(max(1, schema.get("minimum", 1)))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return EXAMPLE_TIME
        if fmt == "date":
            return EXAMPLE_TIME[:10]
        if fmt == "email":
            return "contact@example.edu.cn"
        if fmt in ("uri", "url"):
            return "https://example.sh.cn/"
        if fmt == "uuid":
            return "0b6c8a4e-1f1e-4c7a-9f59-3f1a5d2c7b10"
        if name == "id" or name.endswith("_id"):
            value = f"{name.removesuffix('_id') or 'id'}-0001"
        else:
            value = f"example {name}".strip()
        value = value[: schema.get("maxLength", len(value))]
        return value.ljust(schema.get("minLength", 0), "x")
    return {}


def _example_key(data: Any) -> str:
    """The Kafka key of an example: the aggregate id (`id`, else an identifier-like field)."""
    if isinstance(data, dict):
        for name in ["id", "uscc", "external_id", *sorted(k for k in data if k.endswith("_id"))]:
            if isinstance(data.get(name), str):
                return data[name]
    return "aggregate-0001"


def is_valid(instance: Any, schema: dict) -> bool:
    """Whether the instance validates against the JSON Schema (draft 2020-12, as pydantic emits)."""
    import jsonschema

    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).is_valid(instance)


# --- the document -----------------------------------------------------------------------------------------------

_BOUNDED = {
    "type": "object", "required": ["size", "sha256", "base64", "truncated"],
    "properties": {
        "size": {"type": "integer", "description": "bytes in the original"},
        "sha256": {"type": "string", "description": "hex SHA-256 of the original"},
        "base64": {"type": "string", "description": f"its first {DEAD_LETTER_FIELD_BYTES} bytes, base64"},
        "truncated": {"type": "boolean"},
    },
}
DEAD_LETTER_ENVELOPE = {
    "type": "object",
    "description": "What a dead-letter topic holds (header `dlq.envelope: 1`) instead of a record too large to copy.",
    "required": ["format", "reason", "consumer", "original"],
    "properties": {
        "format": {"type": "string", "const": ENVELOPE_FORMAT},
        "reason": {"type": "string", "description": "why the consumer could not apply the original"},
        "enveloped_because": {"type": "string"},
        "consumer": {"type": "string", "description": "the consumer group"},
        "event_id": {"type": ["string", "null"]},
        "original": {
            "type": "object",
            "required": ["topic", "partition", "offset", "key", "headers", "value"],
            "properties": {
                "topic": {"type": "string"}, "partition": {"type": "integer"}, "offset": {"type": "integer"},
                "timestamp_ms": {"type": ["integer", "null"]},
                "key": {"anyOf": [_BOUNDED, {"type": "null"}]},
                "headers_count": {"type": "integer"},
                "headers": {"type": "array", "maxItems": DEAD_LETTER_MAX_HEADERS, "items": {
                    "type": "object", "properties": {"key": {"type": "string"}, **_BOUNDED["properties"]}}},
                "value": {"type": "object", "required": ["size", "sha256", "head_base64"], "properties": {
                    "size": {"type": "integer"}, "sha256": {"type": "string"}, "is_null": {"type": "boolean"},
                    "head_bytes": {"type": "integer", "maximum": DEAD_LETTER_HEAD_BYTES},
                    "head_base64": {"type": "string"}, "head_text": {"type": "string"},
                }},
            },
        },
    },
}


def contract_gaps(doc: dict) -> list[str]:
    """Event types on a channel (published or handled) without a payload model or without a valid example."""
    gaps = []
    messages = doc["components"]["messages"]
    for topic, channel in doc["channels"].items():
        for name in channel["messages"]:
            msg = messages[name]
            if name == "deadLetter":
                continue
            if msg.get("x-undeclared"):
                gaps.append(f"{topic} {name}: handled, but no EventContract declares its payload")
            elif not msg.get("examples"):
                gaps.append(f"{topic} {name}: no valid example (give the payload model `examples`)")
    return gaps



def envelope(full_type: str, payload_ref: dict) -> dict:
    """The CloudEvents 1.0 structured-mode envelope around a payload schema."""
    return {
        "type": "object",
        "description": "CloudEvents 1.0, structured JSON mode. `id` is the idempotency key; `subject` the Kafka key.",
        "required": ["specversion", "id", "source", "type", "time", "data"],
        "properties": {
            "specversion": {"type": "string", "const": "1.0"},
            "id": {"type": "string", "minLength": 1, "maxLength": 200, "description": "unique event id (dedupe on it)"},
            "source": {"type": "string", "minLength": 1, "maxLength": 500},
            "type": {"type": "string", "const": full_type},
            "subject": {"type": "string", "maxLength": 500, "description": "the aggregate id, equal to the key"},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"type": "string", "const": "application/json"},
            "dataschema": {"type": "string"},
            "correlationid": {"type": "string", "maxLength": 200, "description": "carried end to end for tracing"},
            "traceparent": {"type": "string", "maxLength": 512, "description": (
                "CloudEvents distributed-tracing extension: the W3C traceparent of the span that created the event")},
            "tracestate": {"type": "string", "maxLength": 512, "description": "W3C tracestate, with traceparent"},
            "data": payload_ref,
        },
    }


def build_document(plat: Platform) -> tuple[dict, dict[str, dict[str, dict]]]:
    """The AsyncAPI 3.0 document, and per topic the resolved payload schema of each event type (for snapshots)."""
    producers = {t: svc for svc, topics in plat.published.items() for t in topics}
    messages_by_topic: dict[str, dict[str, Any]] = {}
    declared: dict[str, str] = {}
    for svc, contracts in plat.contracts.items():
        for c in contracts:
            if c.name in declared:
                raise ValueError(f"event name {c.name} is declared by both {declared[c.name]} and {svc}")
            declared[c.name] = svc
            messages_by_topic.setdefault(c.topic, {})[c.name] = (svc, c)
    consumed = {c.topic for c in plat.consumers}
    topics = sorted(set(producers) | set(messages_by_topic) | consumed)

    schemas: dict[str, dict] = {}
    messages: dict[str, dict] = {}
    channels: dict[str, dict] = {}
    operations: dict[str, dict] = {}
    snapshots: dict[str, dict[str, dict]] = {}

    for topic in topics:
        producer = producers.get(topic)
        readers = sorted({c.group for c in plat.consumers if c.topic == topic})
        strict = any(c.strict for c in plat.consumers if c.topic == topic)
        chan_msgs: dict[str, dict] = {}
        for name, (svc, contract) in sorted(messages_by_topic.get(topic, {}).items()):
            ns = svc
            payload, defs = payload_schema(contract.payload, ns)
            schema_name = f"{ns}.{contract.payload.__name__}"
            for key, value in [(schema_name, payload), *defs.items()]:
                if key in schemas and schemas[key] != value:
                    raise ValueError(f"two different schemas are both named {key}")
                schemas[key] = value
            full_type = contract.type_for(plat.prefix)
            resolved = resolve(payload, schemas)
            snapshots.setdefault(topic, {})[name] = resolved
            msg: dict[str, Any] = {
                "name": name,
                "title": name,
                "summary": contract.description or f"{name} on {topic}",
                "contentType": "application/cloudevents+json; charset=utf-8",
                "payload": envelope(full_type, {"$ref": f"#/components/schemas/{schema_name}"}),
                "bindings": {"kafka": {
                    "key": {"type": "string", "description": "the aggregate id (one aggregate's events stay in order)"},
                    "bindingVersion": KAFKA_BINDING,
                }},
                "x-declared-by": svc,
            }
            data = example_for(resolved)
            if is_valid(data, resolved):
                key = _example_key(data)
                msg["examples"] = [{
                    "name": name.rsplit(".", 1)[-1],
                    "summary": f"a {name} event",
                    "payload": {
                        "specversion": "1.0", "id": "5f0c3b52-8c1e-4d7b-9a51-0d2a8f6b1c01",
                        "source": f"//platform.cjrh.sh.cn/{producer}" if producer else _inbound_source(topic),
                        "type": full_type,
                        "subject": key, "time": EXAMPLE_TIME, "datacontenttype": "application/json", "data": data,
                    },
                }]
            messages[name] = msg
            chan_msgs[name] = {"$ref": f"#/components/messages/{name}"}
        for c in plat.consumers:  # types a consumer handles that no contract declares: list them, schema unknown
            if c.topic != topic:
                continue
            for name in c.types:
                if name not in chan_msgs:
                    messages.setdefault(name, {
                        "name": name, "title": name,
                        "summary": f"handled by {c.group}; no EventContract declares its payload yet",
                        "contentType": "application/cloudevents+json; charset=utf-8",
                        "payload": envelope(f"{plat.prefix}.{name}", {"type": "object"}),
                        "x-undeclared": True,
                    })
                    chan_msgs[name] = {"$ref": f"#/components/messages/{name}"}
        who = f"published by the {producer} service" if producer else "published by an external (municipal) platform"
        desc = f"{who}; consumed by {', '.join(readers) if readers else 'no platform service yet'}."
        if strict:
            desc += " Inbound: unknown event types and invalid payloads go to the dead-letter topic."
        desc += (f" A record (value, key and headers) may be at most {MAX_RECORD_BYTES} bytes "
                 "(`max.message.bytes`); what a consumer cannot apply goes to the dead-letter topic.")
        channels[topic] = {
            "address": topic, "title": topic, "description": desc, "messages": chan_msgs,
            "bindings": {"kafka": {"topic": topic, "topicConfiguration": {"max.message.bytes": MAX_RECORD_BYTES},
                                   "bindingVersion": KAFKA_BINDING}},
        }
        if producer:
            operations[f"{producer}.send.{topic}"] = {
                "action": "send", "channel": {"$ref": f"#/channels/{topic}"},
                "summary": f"{producer} publishes through its transactional outbox",
                "messages": [{"$ref": f"#/channels/{topic}/messages/{m}"} for m in chan_msgs],
            }
        for c in sorted((c for c in plat.consumers if c.topic == topic), key=lambda c: c.group):
            operations[f"{c.group}.receive.{topic}"] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{topic}"},
                "summary": f"consumer group {c.group}" + (" (strict: unknown types dead-lettered)" if c.strict else ""),
                "messages": [{"$ref": f"#/channels/{topic}/messages/{m}"} for m in c.types if m in chan_msgs],
                "bindings": {"kafka": {"groupId": {"type": "string", "enum": [c.group]},
                                       "bindingVersion": KAFKA_BINDING}},
            }

    for topic in sorted(consumed):
        dlq = f"{topic}.dlq"
        channels[dlq] = {
            "address": dlq, "title": dlq,
            "description": f"Dead letters of {topic}: the original bytes, key and headers, with the reason in "
                           "`dlq.*` headers; a bounded envelope when the original is too large to copy.",
            "messages": {"deadLetter": {"$ref": "#/components/messages/deadLetter"}},
            "bindings": {"kafka": {"topic": dlq, "topicConfiguration": {"max.message.bytes": MAX_RECORD_BYTES},
                                   "bindingVersion": KAFKA_BINDING}},
        }
        for c in sorted((c for c in plat.consumers if c.topic == topic), key=lambda c: c.group):
            operations[f"{c.group}.deadletter.{topic}"] = {
                "action": "send", "channel": {"$ref": f"#/channels/{dlq}"},
                "summary": f"{c.group} dead-letters what it cannot apply",
                "messages": [{"$ref": f"#/channels/{dlq}/messages/deadLetter"}],
            }
    messages["deadLetter"] = {
        "name": "deadLetter", "title": "Dead letter",
        "summary": "A message a consumer could not process, byte for byte, with the reason in Kafka headers.",
        "description": (
            "The original key, value and headers, followed by the `dlq.*` headers. When that copy would be larger "
            f"than a record may be ({MAX_RECORD_BYTES} bytes), the value is instead a JSON envelope (header "
            "`dlq.envelope: 1`) describing the original: its coordinates, key, headers, size, SHA-256 and first "
            "bytes, with the reason; the whole original stays readable at its offset while its topic keeps it."),
        "contentType": "application/octet-stream",
        "headers": {"type": "object", "properties": {k: {"type": "string", "description": v}
                                                     for k, v in DLQ_HEADERS.items()},
                    "required": ["dlq.reason", "dlq.consumer", "dlq.original.topic"]},
        "payload": {"oneOf": [
            {"description": "the original message value, unchanged (it may not be JSON)"},
            {"$ref": "#/components/schemas/deadLetterEnvelope"},
        ]},
    }
    schemas["deadLetterEnvelope"] = DEAD_LETTER_ENVELOPE

    doc = {
        "asyncapi": "3.0.0",
        "id": "urn:cn:gov:sh:cjrh:platform",
        "info": {
            "title": "Shanghai industry-education integration platform: event contracts",
            "version": plat.version,
            "description": (
                "Generated by scripts/asyncapi.py from the services' contracts.py; do not edit by hand.\n\n"
                "Every value is a CloudEvents 1.0 event in structured JSON mode; the Kafka key is the aggregate id "
                f"(`subject`); `type` is `{plat.prefix}.<message name>`; `id` is the idempotency key. Topics are "
                "`<service>.<aggregate>.v<N>` and change only additively within a version. See "
                "docs/integration-guide.md."
            ),
        },
        "defaultContentType": "application/cloudevents+json; charset=utf-8",
        "servers": {
            "local": {"host": "127.0.0.1:9092", "protocol": "kafka", "description": "make run / make broker"},
            "compose": {"host": "localhost:19092", "protocol": "kafka", "description": "deploy/compose.yaml"},
            "cluster": {"host": "cjrh-kafka-bootstrap:9092", "protocol": "kafka",
                        "description": "Strimzi-managed cluster (deploy/k8s/overlays/prod), in-cluster only"},
        },
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {"schemas": dict(sorted(schemas.items())), "messages": dict(sorted(messages.items()))},
    }
    return doc, snapshots


def render(doc: dict) -> str:
    """The document as stable YAML text."""
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)


# --- breaking-change guard --------------------------------------------------------------------------------------

def _types(schema: dict) -> set[str]:
    """The JSON types a schema admits (looking through anyOf/oneOf)."""
    out: set[str] = set()
    for key in ("anyOf", "oneOf"):
        for s in schema.get(key, []):
            out |= _types(s)
    t = schema.get("type")
    if isinstance(t, str):
        out.add(t)
    elif isinstance(t, list):
        out |= set(t)
    if "$ref" in schema:
        out.add("ref:" + schema["$ref"])
    return out


def _object_branch(schema: dict, key: str) -> dict | None:
    """The sub-schema describing properties or items, looking through a nullable anyOf."""
    if key in schema:
        return schema
    for k in ("anyOf", "oneOf"):
        for s in schema.get(k, []):
            if key in s:
                return s
    return None


def breaking_changes(old: dict, new: dict, path: str = "data") -> list[str]:
    """Why `new` cannot replace `old` within a topic version (empty when the change is additive)."""
    problems = []
    old_t, new_t = _types(old), _types(new)
    if old_t != new_t:
        problems.append(f"{path}: type changed from {sorted(old_t)} to {sorted(new_t)}")
    for key in ("format", "const"):
        if old.get(key) != new.get(key):
            problems.append(f"{path}: {key} changed from {old.get(key)!r} to {new.get(key)!r}")
    if "enum" in old and set(new.get("enum", old["enum"])) != set(old["enum"]):
        removed = set(old["enum"]) - set(new.get("enum", []))
        if removed or "enum" not in new:
            problems.append(f"{path}: allowed values changed ({sorted(map(str, removed))} removed)")
    old_obj, new_obj = _object_branch(old, "properties"), _object_branch(new, "properties")
    if old_obj is not None:
        new_props = (new_obj or {}).get("properties", {})
        old_req, new_req = set(old_obj.get("required", [])), set((new_obj or {}).get("required", []))
        for name, sub in old_obj["properties"].items():
            if name not in new_props:
                problems.append(f"{path}.{name}: removed")
                continue
            if name in new_req and name not in old_req:
                problems.append(f"{path}.{name}: became required")
            problems += breaking_changes(sub, new_props[name], f"{path}.{name}")
        for name in new_props.keys() - old_obj["properties"].keys():
            if name in new_req:
                problems.append(f"{path}.{name}: added as required (old events lack it; add it as optional)")
    old_arr, new_arr = _object_branch(old, "items"), _object_branch(new, "items")
    if old_arr is not None and new_arr is not None:
        problems += breaking_changes(old_arr["items"], new_arr["items"], f"{path}[]")
    return problems


def compare_snapshots(current: dict[str, dict[str, dict]], snapshot_dir: Path = SNAPSHOT_DIR) -> tuple[list, list]:
    """(breaking problems, additive differences) between the code's schemas and the committed snapshots."""
    breaking, additive = [], []
    stored = {p.stem: json.loads(p.read_text()) for p in sorted(snapshot_dir.glob("*.json"))}
    for topic, old_msgs in stored.items():
        new_msgs = current.get(topic, {})
        for name, old in old_msgs.items():
            if name not in new_msgs:
                breaking.append(f"{topic} {name}: event type removed")
                continue
            breaking += [f"{topic} {name} {p}" for p in breaking_changes(old, new_msgs[name])]
            if old != new_msgs[name]:
                additive.append(f"{topic} {name}: schema changed")
        for name in new_msgs.keys() - old_msgs.keys():
            additive.append(f"{topic} {name}: new event type")
    for topic in current.keys() - stored.keys():
        additive.append(f"{topic}: new topic")
    return breaking, additive


def write_snapshots(current: dict[str, dict[str, dict]], snapshot_dir: Path = SNAPSHOT_DIR) -> None:
    """Store each topic's payload schemas (never deleting a topic from the snapshot: retire it with a new version)."""
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    for topic, msgs in current.items():
        path = snapshot_dir / f"{topic}.json"
        merged = json.loads(path.read_text()) if path.exists() else {}
        merged.update(copy.deepcopy(msgs))
        path.write_text(json.dumps(dict(sorted(merged.items())), indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def _inbound_source(topic: str) -> str:
    """The CloudEvents source the platform that owns an inbound topic publishes with (deploy/kafka/platforms.yaml)."""
    return sorted(topic_owners("//platform.cjrh.sh.cn")[topic] - {"//platform.cjrh.sh.cn/registry",
                                                                  "//platform.cjrh.sh.cn/matching"})[0]


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, verify) the AsyncAPI document; record additive schema changes with --update-snapshot."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="verify only; exit 1 on drift or a breaking change")
    ap.add_argument("--update-snapshot", action="store_true",
                    help="also record additive schema changes in deploy/contracts (refused if anything breaks)")
    ap.add_argument("--reset-snapshot", nargs="+", metavar="TOPIC", default=[],
                    help="overwrite these topics' snapshots even with breaking changes: only for a topic version "
                         "no one outside the platform consumes yet")
    ap.add_argument("--output", type=Path, default=DOC_PATH)
    args = ap.parse_args(argv)
    doc, current = build_document(read_platform())
    text = render(doc)
    gaps = contract_gaps(doc)
    if gaps:
        print("event types without a payload schema or example:", file=sys.stderr)
        for g in gaps:
            print("  " + g, file=sys.stderr)
    for topic in args.reset_snapshot:
        if topic not in current:
            print(f"unknown topic {topic}", file=sys.stderr)
            return 2
        (SNAPSHOT_DIR / f"{topic}.json").unlink(missing_ok=True)
        write_snapshots({topic: current[topic]})
    breaking, additive = compare_snapshots(current)
    if breaking:
        print("breaking change(s) to published schemas; publish a new topic version instead:", file=sys.stderr)
        for b in breaking:
            print("  " + b, file=sys.stderr)
    stale = not args.output.exists() or args.output.read_text() != text
    if args.check:
        if stale:
            print(f"{args.output} is stale: run `python scripts/asyncapi.py`", file=sys.stderr)
        if additive:
            print("schema snapshots are behind the code (" + "; ".join(additive) + "): "
                  "run `python scripts/asyncapi.py --update-snapshot`", file=sys.stderr)
        return 1 if stale or additive or breaking or gaps else 0
    if stale:
        args.output.write_text(text)
    print(f"{'wrote' if stale else 'unchanged:'} {args.output.relative_to(ROOT)} ({len(doc['channels'])} channels, "
          f"{len(doc['components']['messages'])} messages)")
    if breaking or gaps:
        return 1
    if args.update_snapshot:
        write_snapshots(current)
        print("snapshots updated" + (f": {'; '.join(additive)}" if additive else " (no change)"))
    elif additive:
        print("additive changes not yet in the snapshots (--update-snapshot records them): " + "; ".join(additive))
    return 0


if __name__ == "__main__":
    sys.exit(main())
