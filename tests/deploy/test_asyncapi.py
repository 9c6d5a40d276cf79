"""The AsyncAPI document: generated from the code, current, valid AsyncAPI 3.0, and guarded against breaking changes."""

from __future__ import annotations

import copy
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
    for svc in gen.service_names():
        for c in gen.declared_contracts(svc):
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
    from common.events import CloudEvent

    contracts = {}
    for svc in gen.service_names():
        contracts |= {c.name: c for c in gen.declared_contracts(svc)}
    with_examples = 0
    for name, msg in committed["components"]["messages"].items():
        schema = _resolved_payload(committed, msg)
        for example in msg.get("examples", []):
            jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(
                example["payload"])
            event = CloudEvent.model_validate(example["payload"])  # the envelope the platform parses
            contracts[name].parse(event)  # and the payload model of the contract
            with_examples += 1
    assert with_examples == len(contracts), "every message carries a valid example"


def test_published_events_validate_against_their_schema(committed):
    """What the code itself would put on the wire (new_event over a model instance) matches the document."""
    from common.events import new_event

    for svc in gen.service_names():
        for c in gen.declared_contracts(svc):
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


def test_every_published_or_handled_event_type_has_a_payload_schema_and_an_example(generated):
    doc, _ = generated
    assert gen.contract_gaps(doc) == []
    plat = gen.read_platform()
    handled = {(c.topic, t) for c in plat.consumers for t in c.types}
    declared = {(c.topic, c.name) for contracts in plat.contracts.values() for c in contracts}
    assert handled <= declared, f"handled without a contract: {sorted(handled - declared)}"
    for topic, name in declared:
        msg = doc["components"]["messages"][name]
        assert msg["payload"]["properties"]["data"] != {"type": "object"} and msg["examples"], (topic, name)


def test_contracts_declared_inside_collections_and_inbound_ones_are_documented(committed):
    messages = committed["channels"]
    for topic, names in {
        "registry.certification.v1": ["registry.certification.pooled", "registry.certification.certified",
                                      "registry.certification.revoked"],
        "matching.match.v1": ["matching.match.proposed", "matching.match.accepted", "matching.match.completed"],
        "events.activity.v1": ["events.activity.created", "events.activity.published", "events.activity.cancelled"],
        "municipal.talent-demand.v1": ["municipal.talent_demand.posted"],
    }.items():
        assert set(names) <= set(messages[topic]["messages"]), topic


def test_the_contract_check_fails_on_a_handled_type_without_a_contract_or_a_message_without_an_example(generated):
    plat = gen.read_platform()
    plat.consumers.append(gen.Consumer("matching", "matching.extra", "municipal.talent-demand.v1",
                                       ["municipal.talent_demand.withdrawn"], True))
    doc, _ = gen.build_document(plat)
    assert gen.contract_gaps(doc) == ["municipal.talent-demand.v1 municipal.talent_demand.withdrawn: handled, but "
                                      "no EventContract declares its payload"]
    stripped = copy.deepcopy(generated[0])
    stripped["components"]["messages"]["matching.match.accepted"].pop("examples")
    assert gen.contract_gaps(stripped) == [
        "matching.match.v1 matching.match.accepted: no valid example (give the payload model `examples`)"]


def test_every_published_and_inbound_topic_version_is_under_the_breaking_change_check(generated):
    plat = gen.read_platform()
    _, current = generated
    published = {t for topics in plat.published.values() for t in topics}
    inbound = {c.topic for c in plat.consumers if c.strict}
    for topic in published | inbound:
        snapshot = gen.SNAPSHOT_DIR / f"{topic}.json"
        assert snapshot.exists(), f"{topic} has no schema snapshot in deploy/contracts"
        assert set(json.loads(snapshot.read_text())) == set(current[topic]), topic


def test_inbound_schemas_carry_the_constraints_their_handlers_enforce(committed):
    from common.limits import MAX_RECORD_BYTES
    from common.vocabulary import DISTRICT_NAMES_ZH, DISTRICTS, INDUSTRIES, USCC_PATTERN

    schemas = committed["components"]["schemas"]
    talent = schemas["matching.MunicipalTalentDemand"]
    assert talent["properties"]["employer_uscc"]["pattern"] == USCC_PATTERN
    assert talent["properties"]["industry"]["enum"] == list(INDUSTRIES)
    assert talent["properties"]["district"]["enum"] == list(DISTRICTS)
    assert talent["x-max-record-bytes"] == MAX_RECORD_BYTES
    enterprise = schemas["registry.MunicipalEnterprise"]
    assert enterprise["properties"]["uscc"]["pattern"] == USCC_PATTERN
    assert set(enterprise["properties"]["district"]["enum"]) == set(DISTRICTS) | set(DISTRICT_NAMES_ZH)
    assert "存续" in enterprise["properties"]["status"]["enum"] and "注销" in enterprise["properties"]["status"]["enum"]
    assert enterprise["x-max-data-bytes"] == 8192 and enterprise["x-max-record-bytes"] == MAX_RECORD_BYTES
    for name, channel in committed["channels"].items():
        assert channel["bindings"]["kafka"]["topicConfiguration"]["max.message.bytes"] == MAX_RECORD_BYTES, name


def test_the_shared_vocabulary_is_the_one_each_service_enforces():
    from common.vocabulary import DISTRICT_NAMES_ZH, DISTRICTS, INDUSTRIES, INDUSTRY_NAMES_ZH
    from matching.domain import DISTRICTS as MATCHING_DISTRICTS
    from registry import domain

    assert set(MATCHING_DISTRICTS) == set(DISTRICTS) == {d.value for d in domain.District}
    assert {d.value for d in domain.Industry} == set(INDUSTRIES)
    assert {k: v.value for k, v in domain.DISTRICT_NAMES_ZH.items()} == DISTRICT_NAMES_ZH
    assert {k: v.value for k, v in domain.INDUSTRY_NAMES_ZH.items()} == INDUSTRY_NAMES_ZH


def test_the_integration_guide_covers_every_topic_the_record_limit_and_links_existing_examples(committed):
    import re

    from common.limits import MAX_RECORD_BYTES

    guide = (ROOT / "docs" / "integration-guide.md").read_text()
    for topic, channel in committed["channels"].items():
        if topic.endswith(".dlq"):
            continue
        row = next((line for line in guide.splitlines() if line.startswith(f"| `{topic}` |")), None)
        assert row, f"the guide's topic table lacks {topic}"
        for name in channel["messages"]:
            assert f"`{name.rsplit('.', 1)[-1]}`" in row or f"`{name}`" in row, (topic, name)
    assert f"{MAX_RECORD_BYTES} bytes" in guide
    for link in re.findall(r"\]\((\.\./examples/[^)]+)\)", guide):
        assert (ROOT / "docs" / link).resolve().exists(), link
    for word in ("SASL_SSL", "SCRAM-SHA-512", "KAFKA_SSL_CAFILE", "registry.certification.v1", "dlq.envelope"):
        assert word in guide, word


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
