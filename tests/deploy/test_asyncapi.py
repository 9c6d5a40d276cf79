"""The AsyncAPI document: generated from the code, current, valid AsyncAPI 3.0, and guarded against breaking changes."""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.deploy.support import gen

ROOT = Path(__file__).resolve().parents[2]




@pytest.fixture(scope="module")
def generated():
    """(document, per-topic schemas) generated from the code right now."""
    return gen.build_document(gen.read_platform())


@pytest.fixture(scope="module")
def committed() -> dict:
    """docs/asyncapi.yaml as committed."""
    return yaml.safe_load(gen.DOC_PATH.read_text())


def test_committed_document_is_what_the_code_generates(generated):
    doc, _ = generated
    assert gen.DOC_PATH.read_text() == gen.render(doc), (
        "docs/asyncapi.yaml drifted from the services' contracts: run `.venv/bin/python scripts/asyncapi.py`")


def test_document_is_valid_asyncapi_3(committed, asyncapi_schema):
    errors = sorted(jsonschema.Draft7Validator(asyncapi_schema).iter_errors(committed), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors[:10])


def test_the_asyncapi_schema_check_can_fail(committed, asyncapi_schema):
    broken = copy.deepcopy(committed)
    first_op = next(iter(broken["operations"]))
    broken["operations"][first_op]["action"] = "publish"  # AsyncAPI 2 wording: not valid in 3.0
    assert not jsonschema.Draft7Validator(asyncapi_schema).is_valid(broken)


def test_every_declared_contract_has_a_channel_and_a_message(committed):
    from common.events import EventContract

    for svc in gen.service_names():
        mod = importlib.import_module(f"{svc}.contracts")
        for c in (v for v in vars(mod).values() if isinstance(v, EventContract)):
            assert c.topic in committed["channels"], c.topic
            assert c.name in committed["channels"][c.topic]["messages"], c.name
            msg = committed["components"]["messages"][c.name]
            assert msg["payload"]["properties"]["type"]["const"] == f"cn.gov.sh.cjrh.{c.name}"


def test_every_consumed_topic_has_a_receive_operation_and_a_dead_letter_channel(committed, generated):
    plat = gen.read_platform()
    for c in plat.consumers:
        op = committed["operations"][f"{c.group}.receive.{c.topic}"]
        assert op["action"] == "receive"
        assert op["bindings"]["kafka"]["groupId"]["enum"] == [c.group]
        assert f"{c.topic}.dlq" in committed["channels"]


def _resolved_payload(doc: dict, message: dict) -> dict:
    return gen.resolve(message["payload"], doc["components"]["schemas"])


def test_examples_validate_against_their_schema_and_the_code(committed):
    from common.events import CloudEvent, EventContract

    contracts = {}
    for svc in gen.service_names():
        mod = importlib.import_module(f"{svc}.contracts")
        contracts |= {v.name: v for v in vars(mod).values() if isinstance(v, EventContract)}
    with_examples = 0
    for name, msg in committed["components"]["messages"].items():
        schema = _resolved_payload(committed, msg)
        for example in msg.get("examples", []):
            jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(
                example["payload"])
            event = CloudEvent.model_validate(example["payload"])  # the envelope the platform parses
            contracts[name].parse(event)  # and the payload model of the contract
            with_examples += 1
    assert with_examples >= len(contracts) * 0.8, "most messages should carry an example"


def test_published_events_validate_against_their_schema(committed):
    """What the code itself would put on the wire (new_event over a model instance) matches the document."""
    from common.events import EventContract, new_event

    for svc in gen.service_names():
        mod = importlib.import_module(f"{svc}.contracts")
        for c in (v for v in vars(mod).values() if isinstance(v, EventContract)):
            msg = committed["components"]["messages"][c.name]
            if not msg.get("examples"):
                continue
            payload = c.payload.model_validate(msg["examples"][0]["payload"]["data"])
            event = new_event(contract=c, payload=payload, source="//test", type_prefix="cn.gov.sh.cjrh",
                              subject="k-1")
            wire = json.loads(event.to_bytes())
            jsonschema.Draft202012Validator(_resolved_payload(committed, msg)).validate(wire)


def test_snapshots_are_current_and_nothing_breaks(generated):
    _, current = generated
    breaking, additive = gen.compare_snapshots(current)
    assert not breaking, "breaking change(s) within a topic version (publish a v2 topic instead):\n" + "\n".join(
        breaking)
    assert not additive, ("schema snapshots in deploy/contracts are behind the code: run `.venv/bin/python "
                          "scripts/asyncapi.py --update-snapshot` and commit them\n" + "\n".join(additive))


# --- the breaking-change rules themselves (pure) ----------------------------------------------------------------

OLD = {
    "type": "object",
    "required": ["id", "status"],
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": ["draft", "open"]},
        "name_en": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        "tags": {"type": "array", "items": {"type": "string"}},
        "members": {"type": "array", "items": {"type": "object", "required": ["id"],
                                               "properties": {"id": {"type": "string"}, "role": {"type": "string"}}}},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}


def _changed(fn) -> dict:
    new = copy.deepcopy(OLD)
    fn(new)
    return new


@pytest.mark.unit
def test_an_optional_field_may_be_added():
    new = _changed(lambda s: s["properties"].update(district={"type": "string", "default": ""}))
    assert gen.breaking_changes(OLD, new) == []


@pytest.mark.unit
def test_removing_a_field_is_breaking():
    new = _changed(lambda s: s["properties"].pop("name_en"))
    assert gen.breaking_changes(OLD, new) == ["data.name_en: removed"]


@pytest.mark.unit
def test_changing_a_type_is_breaking():
    new = _changed(lambda s: s["properties"].update(id={"type": "integer"}))
    assert gen.breaking_changes(OLD, new) == ["data.id: type changed from ['string'] to ['integer']"]


@pytest.mark.unit
def test_making_a_field_required_is_breaking():
    def change(s):
        s["required"].append("name_en")
    assert gen.breaking_changes(OLD, _changed(change)) == ["data.name_en: became required"]


@pytest.mark.unit
def test_adding_a_required_field_is_breaking():
    def change(s):
        s["properties"]["district"] = {"type": "string"}
        s["required"].append("district")
    assert gen.breaking_changes(OLD, _changed(change)) == [
        "data.district: added as required (old events lack it; add it as optional)"]


@pytest.mark.unit
def test_nested_changes_are_found():
    def change(s):
        s["properties"]["members"]["items"]["properties"].pop("role")
        s["properties"]["tags"]["items"] = {"type": "integer"}
        s["properties"]["updated_at"].pop("format")
    problems = gen.breaking_changes(OLD, _changed(change))
    assert "data.members[].role: removed" in problems
    assert "data.tags[]: type changed from ['string'] to ['integer']" in problems
    assert "data.updated_at: format changed from 'date-time' to None" in problems


@pytest.mark.unit
def test_removing_an_allowed_value_is_breaking_and_adding_one_is_not():
    fewer = _changed(lambda s: s["properties"]["status"].update(enum=["draft"]))
    more = _changed(lambda s: s["properties"]["status"].update(enum=["draft", "open", "closed"]))
    assert gen.breaking_changes(OLD, fewer) == ["data.status: allowed values changed (['open'] removed)"]
    assert gen.breaking_changes(OLD, more) == []


def test_snapshot_comparison_flags_removed_event_types_and_accepts_new_ones(tmp_path):
    gen.write_snapshots({"demo.thing.v1": {"demo.thing.created": OLD, "demo.thing.closed": OLD}}, tmp_path)
    breaking, additive = gen.compare_snapshots(
        {"demo.thing.v1": {"demo.thing.created": OLD, "demo.thing.renamed": OLD}}, tmp_path)
    assert breaking == ["demo.thing.v1 demo.thing.closed: event type removed"]
    assert additive == ["demo.thing.v1 demo.thing.renamed: new event type"]


def test_a_field_dropped_from_the_code_is_refused_against_its_snapshot(tmp_path, generated):
    _, current = generated
    topic, messages = next(iter(sorted(current.items())))
    name, schema = next(iter(sorted(messages.items())))
    tampered = copy.deepcopy(schema)
    tampered.setdefault("properties", {})["a_field_the_code_no_longer_has"] = {"type": "string"}
    gen.write_snapshots({**current, topic: {**messages, name: tampered}}, tmp_path)
    breaking, _ = gen.compare_snapshots(current, tmp_path)
    assert breaking == [f"{topic} {name} data.a_field_the_code_no_longer_has: removed"]
