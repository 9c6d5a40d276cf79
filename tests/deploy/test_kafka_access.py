"""One source of truth for Kafka rights: the services' specs plus deploy/kafka/platforms.yaml generate the ACLs, the
Strimzi KafkaUser and KafkaTopic resources, and the topic owners; the committed manifests cannot drift from them."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tests.support.harness import kafka_access

access = kafka_access()
MODEL = access.read_model()
PLATFORMS_DOC = yaml.safe_load(access.PLATFORMS.read_text())
SERVICES = access.service_topics()
BASE = "//platform.cjrh.sh.cn"


def _model(doc: dict):
    return access.build_model(doc, SERVICES, source_base=BASE)


def _ops(principal: str) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for a in MODEL.principals[principal].acls():
        out.setdefault((a.resource, a.name), set()).add(a.operation)
    return out


def test_the_committed_strimzi_resources_are_what_the_code_generates():
    assert access.drift(MODEL) == [], "run `.venv/bin/python scripts/kafka_access.py` and commit the result"


def test_the_drift_check_can_fail(tmp_path: Path):
    for name, text in access.render(MODEL).items():
        (tmp_path / name).write_text(text)
    owners, plan = tmp_path / "owners.json", tmp_path / "access.json"
    owners.write_text(access.owners_text(MODEL))
    plan.write_text(access.access_text(MODEL))
    assert access.drift(MODEL, tmp_path, owners, plan) == []
    doc = copy.deepcopy(PLATFORMS_DOC)
    doc["platforms"]["market-supervision"]["grants"].append("registry.contact.v1")
    assert access.drift(_model(doc), tmp_path, owners, plan) == [str(tmp_path / "kafka-users.yaml"), str(plan)]
    doc["platforms"]["market-supervision"]["sources"].append("//elsewhere")
    assert str(owners) in access.drift(_model(doc), tmp_path, owners, plan)


def test_the_broker_applies_exactly_the_model():
    generated = access.load_generated()
    assert generated.acls == MODEL.acls()
    assert set(generated.principals) == set(MODEL.principals) and set(generated.topics) == set(MODEL.topics)


def test_a_service_may_write_what_it_publishes_and_its_dead_letters_and_read_what_it_consumes():
    ops = _ops("registry")
    assert ops[("topic", "registry.institution.v1")] == {"Write", "Describe"}
    assert ops[("topic", "registry.contact.v1")] == {"Write", "Describe"}
    assert ops[("topic", "municipal.enterprise.v1")] == {"Read", "Describe"}
    assert ops[("topic", "municipal.enterprise.v1.dlq")] == {"Write", "Describe"}
    assert ops[("group", "registry.")] == {"Read"}
    assert ops[("cluster", "kafka-cluster")] == {"IdempotentWrite"}
    assert ("topic", "matching.match.v1") not in ops


@pytest.mark.parametrize("principal", sorted(MODEL.principals))
def test_no_principal_gets_more_than_read_write_describe_and_idempotent_write(principal):
    ops = set().union(*_ops(principal).values())
    assert ops <= {"Read", "Write", "Describe", "IdempotentWrite"}
    assert not any(a.pattern == "prefix" and a.resource == "topic" for a in MODEL.principals[principal].acls())


def test_only_registry_may_write_registry_topics_and_only_platforms_write_inbound_topics():
    writers: dict[str, set[str]] = {}
    for p in MODEL.principals.values():
        for t in p.writes:
            writers.setdefault(t, set()).add(p.name)
    assert writers["registry.institution.v1"] == {"registry"}
    assert writers["municipal.enterprise.v1"] == {"market-supervision"}
    assert writers["municipal.talent-demand.v1"] == {"human-resources"}


def test_platforms_read_public_topics_and_contact_details_only_when_granted():
    for p in MODEL.principals.values():
        if p.kind == "platform":
            assert set(MODEL.public) <= set(p.reads)
            assert "registry.contact.v1" not in p.reads
    doc = copy.deepcopy(PLATFORMS_DOC)
    doc["platforms"]["education"]["grants"] = ["registry.contact.v1"]
    assert "registry.contact.v1" in _model(doc).principals["education"].reads


def test_every_published_topic_must_be_classified_public_or_internal():
    doc = copy.deepcopy(PLATFORMS_DOC)
    doc["internal_topics"].remove("registry.contact.v1")
    with pytest.raises(access.AccessModelError, match=r"registry\.contact\.v1 is published"):
        _model(doc)


def test_a_platform_may_not_be_given_a_service_topic_to_write():
    doc = copy.deepcopy(PLATFORMS_DOC)
    doc["platforms"]["market-supervision"]["writes"].append("registry.institution.v1")
    with pytest.raises(access.AccessModelError, match="only write inbound topics"):
        _model(doc)


def test_each_topic_has_an_owner_whose_source_its_consumers_accept():
    owners = MODEL.owners()
    assert owners["registry.institution.v1"] == [f"{BASE}/registry"]
    assert owners["municipal.enterprise.v1"] == ["//scjgj.sh.gov.cn/enterprise"]
    assert not any(t.endswith(".dlq") for t in owners)


def _generated(kind: str) -> list[dict]:
    text = access.render(MODEL)["kafka-users.yaml" if kind == "KafkaUser" else "kafka-topics.yaml"]
    return [d for d in yaml.safe_load_all(text) if d]


def test_kafka_topics_are_replicated_three_times_with_two_in_sync_and_dead_letters_kept_longer():
    topics = {d["metadata"]["name"]: d for d in _generated("KafkaTopic")}
    assert set(topics) == set(MODEL.topics)
    for t in topics.values():
        assert t["apiVersion"] == "kafka.strimzi.io/v1" and t["metadata"]["labels"]["strimzi.io/cluster"] == "cjrh"
        assert t["spec"]["replicas"] == 3 and t["spec"]["config"]["min.insync.replicas"] == 2
    assert (topics["registry.institution.v1.dlq"]["spec"]["config"]["retention.ms"]
            > topics["registry.institution.v1"]["spec"]["config"]["retention.ms"])


def test_kafka_users_authenticate_with_scram_and_carry_simple_acls():
    users = {d["metadata"]["name"]: d for d in _generated("KafkaUser")}
    assert set(users) == set(MODEL.principals) | {access.ADMIN}
    for name, u in users.items():
        assert u["spec"]["authentication"] == {"type": "scram-sha-512"}
        if name != access.ADMIN:
            assert u["spec"]["authorization"]["type"] == "simple" and u["spec"]["authorization"]["acls"]


def test_the_production_kafka_authenticates_every_listener_and_authorises_with_acls(kustomize_builds):
    prod = kustomize_builds["prod"]
    kafka = next(d for d in prod if d["kind"] == "Kafka")
    for listener in kafka["spec"]["kafka"]["listeners"]:
        assert listener["tls"] is True and listener["authentication"] == {"type": "scram-sha-512"}
    assert kafka["spec"]["kafka"]["authorization"] == {"type": "simple", "superUsers": [access.ADMIN]}
    assert {d["metadata"]["name"] for d in prod if d["kind"] == "KafkaUser"} >= set(SERVICES)


def test_each_production_workload_connects_as_its_own_kafka_user(kustomize_builds):
    for doc in kustomize_builds["prod"]:
        if doc["kind"] not in ("Deployment", "Job") or "app.kubernetes.io/part-of" not in doc["metadata"]["labels"]:
            continue
        svc = doc["metadata"]["labels"]["app.kubernetes.io/name"]
        env = {e["name"]: e for e in doc["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["KAFKA_SASL_USERNAME"]["value"] == svc, doc["metadata"]["name"]
        assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": svc, "key": "password"}


# --- Docker Compose ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((access.ROOT / "deploy" / "compose.yaml").read_text())


def test_compose_kafka_accepts_only_tls_with_sasl(compose):
    env = compose["services"]["kafka"]["environment"]
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(protocols.values()) == {"SASL_SSL"}


def test_compose_services_connect_as_their_own_principal_and_only_the_jobs_as_the_admin(compose):
    for name, s in compose["services"].items():
        if s.get("image", "").split("/")[-1].split(":")[0] not in SERVICES or name == "kafka-access":
            continue
        svc, role = name.rsplit("-", 1)
        if role == "migrate":
            continue
        expected = "admin.env" if role == "topics" else f"{svc}.env"
        assert s["env_file"] == [f"../.local/compose/kafka/{expected}"], name
        assert s["environment"]["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert compose["services"]["kafka-access"]["command"][0] == "kafka-access"


def test_compose_secrets_provide_every_file_compose_mounts(compose, tmp_path: Path):
    written = set(access.compose_secrets(tmp_path / "kafka", model=MODEL))
    mounted = set()
    for s in compose["services"].values():
        for ref in [*s.get("env_file", []), *(v.split(":")[0] for v in s.get("volumes", []))]:
            if ref.startswith("../.local/compose/kafka/"):
                mounted.add(ref.removeprefix("../.local/compose/kafka/"))
    assert mounted <= written
    assert "access.json" in written and {f"{p}.env" for p in MODEL.principals} <= written
    plan = __import__("json").loads((tmp_path / "kafka" / "access.json").read_text())
    assert set(plan["scram"]) == set(MODEL.principals) and len(plan["acls"]) == len(MODEL.acls())
    server = (tmp_path / "kafka" / "server.properties").read_text()
    assert "allow.everyone.if.no.acl.found=false" in server and "StandardAuthorizer" in server
    again = (tmp_path / "kafka" / "passwords.json").read_text()
    access.compose_secrets(tmp_path / "kafka", model=MODEL)
    assert (tmp_path / "kafka" / "passwords.json").read_text() == again, "passwords must survive a regeneration"


# --- Kubernetes: both overlays secure Kafka the same way --------------------------------------------------------

def _platform_processes(docs: list[dict]):
    """(kind/name, service, pod spec) of every platform Deployment and Job."""
    for d in docs:
        labels = d["metadata"].get("labels", {})
        if d["kind"] in ("Deployment", "Job") and labels.get("app.kubernetes.io/part-of") == "cjrh-platform":
            pod = d["spec"]["template"]["spec"]
            yield f"{d['kind']}/{d['metadata']['name']}", labels["app.kubernetes.io/name"], pod


@pytest.mark.parametrize("build", ["dev", "prod"])
def test_every_kubernetes_process_connects_to_kafka_over_sasl_ssl_as_its_own_principal(kustomize_builds, build):
    docs = kustomize_builds[build]
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    seen = 0
    for where, service, pod in _platform_processes(docs):
        [c] = pod["containers"]
        env = {}
        for src in c.get("envFrom", []):
            env.update(maps.get(src.get("configMapRef", {}).get("name"), {}))
        env.update({e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])})
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", where
        assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", where
        assert env["KAFKA_SASL_USERNAME"] == service, where
        assert env["KAFKA_SASL_PASSWORD"] == {"secretKeyRef": {"name": service, "key": "password"}}, where
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        ca_dir = env["KAFKA_SSL_CAFILE"].rsplit("/", 1)[0]
        assert volumes[mounts[ca_dir]]["secret"]["secretName"] == "cjrh-cluster-ca-cert", where
        seen += 1
    assert seen == 4 * 4, "api, worker, migrate and topics of four services"


def test_the_dev_cluster_broker_accepts_only_tls_with_sasl_and_an_authoriser(kustomize_builds):
    [kafka] = [d for d in kustomize_builds["dev"] if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "kafka"]
    [c] = kafka["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(protocols.values()) == {"SASL_SSL"}
    assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/mnt/shared/config", access.BROKER_MOUNT}
    for build, docs in kustomize_builds.items():
        assert "PLAINTEXT" not in yaml.safe_dump_all(docs), f"{build} configures a PLAINTEXT Kafka connection"


def _secret_references(docs: list[dict]) -> dict[str, set[str]]:
    """Every Secret a workload of `docs` needs (optional ones aside): name -> the keys it reads (empty: all)."""
    refs: dict[str, set[str]] = {}
    for d in docs:
        if d["kind"] == "Ingress":
            for tls in d["spec"].get("tls", []):
                refs.setdefault(tls["secretName"], set()).update({"tls.crt", "tls.key"})
        if d["kind"] not in ("Deployment", "Job", "StatefulSet"):
            continue
        pod = d["spec"]["template"]["spec"]
        for c in pod["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    refs.setdefault(ref["name"], set()).add(ref["key"])
            for src in c.get("envFrom", []):
                ref = src.get("secretRef")
                if ref and not ref.get("optional"):
                    refs.setdefault(ref["name"], set())
        for v in pod.get("volumes", []):
            if "secret" in v and not v["secret"].get("optional"):
                refs.setdefault(v["secret"]["secretName"], set()).update(i["key"] for i in v["secret"].get("items", []))
    return refs


def test_k8s_dev_secrets_provide_every_secret_and_key_the_dev_overlay_needs(kustomize_builds, tmp_path: Path):
    path = access.k8s_dev_secrets(tmp_path, model=MODEL)
    secrets = {d["metadata"]["name"]: d for d in yaml.safe_load_all(path.read_text()) if d}
    for name, keys in _secret_references(kustomize_builds["dev"]).items():
        assert name in secrets, f"the dev overlay needs Secret {name}: `make k8s-dev-secrets` must write it"
        have = set(secrets[name].get("data", {})) | set(secrets[name].get("stringData", {}))
        assert keys <= have, f"Secret {name} lacks {sorted(keys - have)}"
    assert all(s["metadata"]["namespace"] == "cjrh" for s in secrets.values())
    [ingress] = [d for d in kustomize_builds["dev"] if d["kind"] == "Ingress"]
    assert ingress["spec"]["tls"][0]["hosts"] == [access.K8S_DEV_HOST], "the Ingress certificate names its host"
    before = path.read_text()
    assert access.k8s_dev_secrets(tmp_path, model=MODEL).read_text() == before, "passwords survive a regeneration"
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_the_secret_reference_check_can_fail(kustomize_builds):
    docs = [{"kind": "Job", "spec": {"template": {"spec": {"containers": [{"envFrom": [{"secretRef": {"name": "x"}}]}],
                                                         "volumes": []}}}}]
    assert _secret_references(docs) == {"x": set()}
