"""Offline checks of the deployment files: Kubernetes, compose, Prometheus, Grafana and the Dockerfile."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

import common.metrics
from tests.deploy.promql import PROMETHEUS_OWN, exported_names, metric_names

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))
KUBERNETES_VERSION = "1.32.0"
# Custom resources the offline Kubernetes schemas cannot know; everything else must validate.
CUSTOM_KINDS = {("kafka.strimzi.io/v1beta2", "Kafka"), ("kafka.strimzi.io/v1beta2", "KafkaNodePool"),
                ("monitoring.coreos.com/v1", "PodMonitor")}
EXPORTED = exported_names(common.metrics) | PROMETHEUS_OWN


def kafka_version() -> str:
    """The Kafka version the tests run (deploy/kafka/pom.xml)."""
    return re.search(r"<kafka.version>([^<]+)</kafka.version>", (DEPLOY / "kafka" / "pom.xml").read_text()).group(1)


def _containers(doc: dict) -> list[dict]:
    return doc["spec"]["template"]["spec"]["containers"]


def _by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


# --- Kubernetes -------------------------------------------------------------------------------------------------

def test_every_build_validates_against_the_kubernetes_schemas(kustomize_builds, kubernetes_validate):
    skipped = []
    for build, docs in kustomize_builds.items():
        for doc in docs:
            if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
                skipped.append(doc["kind"])
                continue
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{build}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert {"PodMonitor", "Kafka", "KafkaNodePool"} <= set(skipped)


def test_the_kubernetes_validation_can_fail(kubernetes_validate, kustomize_builds):
    deployment = next(d for d in kustomize_builds["base"] if d["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    _containers(broken)[0]["livenessProbe"]["httpGet"]["path"] = 42
    _containers(broken)[0]["unknownField"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("build", ["base", "dev", "prod"])
def test_each_service_has_api_worker_and_jobs_with_probes_limits_and_no_root(kustomize_builds, build):
    docs = kustomize_builds[build]
    deployments, jobs = _by_kind(docs, "Deployment"), _by_kind(docs, "Job")
    for svc in SERVICES:
        up = svc.upper()
        for role in ("api", "worker"):
            d = deployments[f"{svc}-{role}"]
            pod = d["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            for c in pod["containers"]:
                assert c["args"] == [role]
                assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
                assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
                assert {"cpu", "memory"} <= c["resources"]["requests"].keys()
                assert {"cpu", "memory"} <= c["resources"]["limits"].keys()
                assert c["securityContext"]["readOnlyRootFilesystem"] is True
                assert c["image"].endswith(f"/{svc}:" + c["image"].rsplit(":", 1)[1])
                assert {"secretRef": {"name": f"{svc}-database"}} in c["envFrom"]
                assert {"name": f"{up}_RUN_MIGRATIONS", "value": "false"} in c["env"]
        for job in ("migrate", "topics"):
            assert _containers(jobs[f"{svc}-{job}"])[0]["args"] == [job]


@pytest.mark.parametrize("build", ["base", "dev", "prod"])
def test_apis_autoscale_and_every_deployment_has_a_disruption_budget(kustomize_builds, build):
    docs = kustomize_builds[build]
    deployments = _by_kind(docs, "Deployment")
    hpas, pdbs = _by_kind(docs, "HorizontalPodAutoscaler"), _by_kind(docs, "PodDisruptionBudget")
    for svc in SERVICES:
        hpa = hpas[f"{svc}-api"]
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{svc}-api"}
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        for role in ("api", "worker"):
            labels = deployments[f"{svc}-{role}"]["spec"]["template"]["metadata"]["labels"]
            selector = pdbs[f"{svc}-{role}"]["spec"]["selector"]["matchLabels"]
            assert selector.items() <= labels.items(), f"PDB {svc}-{role} does not select its pods"
    for d in deployments.values():  # selectors of different services never overlap
        others = [o for o in deployments.values() if o is not d]
        sel = d["spec"]["selector"]["matchLabels"]
        assert not any(sel.items() <= o["spec"]["template"]["metadata"]["labels"].items() for o in others)


def test_no_secret_values_are_committed(kustomize_builds):
    for build, docs in kustomize_builds.items():
        assert not [d for d in docs if d["kind"] == "Secret"], f"{build} contains a Secret"
        text = yaml.safe_dump_all(docs)
        assert "JWT_SECRET:" not in text.replace("key: JWT_SECRET", "")
        assert not re.search(r"postgresql://[^:\s]+:[^@\s]+@", text), f"{build} embeds a database password"


def test_network_policies_let_a_service_reach_only_the_broker_and_its_own_database(kustomize_builds):
    docs = kustomize_builds["prod"]
    policies = _by_kind(docs, "NetworkPolicy")
    assert policies["platform-default-deny"]["spec"]["policyTypes"] == ["Ingress", "Egress"]
    for svc in SERVICES:
        egress = policies[f"{svc}-egress"]["spec"]["egress"]
        targets = [peer.get("podSelector", {}).get("matchLabels", {}) for rule in egress for peer in rule["to"]]
        databases = {k for t in targets for k in t if k.startswith("cjrh.sh.cn/database-for-")}
        assert databases == {f"cjrh.sh.cn/database-for-{svc}"}
        assert {"cjrh.sh.cn/kafka-broker": "true"} in targets
        assert all(peer.get("podSelector") is not None for rule in egress for peer in rule["to"]), "no open egress"
    for pod_selector in (p["spec"]["podSelector"]["matchLabels"] for p in policies.values()):
        assert pod_selector.get("app.kubernetes.io/part-of") == "cjrh-platform"


def test_broker_and_database_pods_carry_the_labels_the_policies_expect(kustomize_builds):
    dev = kustomize_builds["dev"]
    sets = _by_kind(dev, "StatefulSet")
    assert sets["kafka"]["spec"]["template"]["metadata"]["labels"]["cjrh.sh.cn/kafka-broker"] == "true"
    pg_labels = sets["postgres"]["spec"]["template"]["metadata"]["labels"]
    assert all(pg_labels[f"cjrh.sh.cn/database-for-{svc}"] == "true" for svc in SERVICES)
    assert _containers(sets["kafka"])[0]["image"] == f"apache/kafka:{kafka_version()}"
    pool = next(d for d in kustomize_builds["prod"] if d["kind"] == "KafkaNodePool")
    assert pool["spec"]["template"]["pod"]["metadata"]["labels"]["cjrh.sh.cn/kafka-broker"] == "true"


def test_prod_declares_a_three_broker_kraft_kafka_for_strimzi(kustomize_builds):
    prod = kustomize_builds["prod"]
    kafka = next(d for d in prod if d["kind"] == "Kafka")
    pool = next(d for d in prod if d["kind"] == "KafkaNodePool")
    assert kafka["metadata"]["annotations"] == {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"}
    assert kafka["spec"]["kafka"]["version"] == kafka_version()
    assert "zookeeper" not in kafka["spec"]
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert pool["spec"]["replicas"] == 3 and set(pool["spec"]["roles"]) == {"controller", "broker"}
    assert kafka["spec"]["kafka"]["config"]["min.insync.replicas"] == 2
    config = _by_kind(prod, "ConfigMap")
    platform = next(v for k, v in config.items() if k.startswith("cjrh-platform-"))["data"]
    assert platform["KAFKA_BOOTSTRAP_SERVERS"] == f"{kafka['metadata']['name']}-kafka-bootstrap:9092"
    assert platform["TOPIC_REPLICATION"] == "3"


def test_every_broker_we_ship_takes_records_up_to_the_one_record_limit(kustomize_builds, compose):
    from common.limits import MAX_RECORD_BYTES

    assert compose["services"]["kafka"]["environment"]["KAFKA_MESSAGE_MAX_BYTES"] == str(MAX_RECORD_BYTES)
    kafka = next(d for d in kustomize_builds["prod"] if d["kind"] == "Kafka")
    assert kafka["spec"]["kafka"]["config"]["message.max.bytes"] == MAX_RECORD_BYTES
    dev = next(c for d in kustomize_builds["dev"] if d["kind"] == "StatefulSet" for c in _containers(d)
               if c["image"].startswith("apache/kafka"))
    assert {e["name"]: e["value"] for e in dev["env"]}["KAFKA_MESSAGE_MAX_BYTES"] == str(MAX_RECORD_BYTES)
    broker = _load_script("cjrh_broker_script", ROOT / "scripts" / "broker.py")
    props = broker._properties(ROOT / ".local" / "unused", 9092, 9093, 3).splitlines()
    assert f"message.max.bytes={MAX_RECORD_BYTES}" in props


def _load_script(name: str, path: Path):
    from tests.deploy.support import load

    return load(name, path)


@pytest.mark.parametrize("build", ["dev", "prod"])
def test_ingress_routes_each_service_prefix_with_a_cors_allow_list(kustomize_builds, build):
    ingress = _by_kind(kustomize_builds[build], "Ingress")["cjrh-api"]
    services = {s["metadata"]["name"] for s in kustomize_builds[build] if s["kind"] == "Service"}
    paths = {p["path"]: p["backend"]["service"]["name"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert paths == {f"/{svc}(/|$)(.*)": f"{svc}-api" for svc in SERVICES}
    assert set(paths.values()) <= services
    annotations = ingress["metadata"]["annotations"]
    origins = [o.strip() for o in annotations["nginx.ingress.kubernetes.io/cors-allow-origin"].split(",")]
    assert origins and "*" not in origins and all(o.startswith(("https://", "http://")) for o in origins)


def test_dev_postgres_init_script_is_the_compose_one():
    assert (DEPLOY / "k8s" / "overlays" / "dev" / "postgres" / "init-databases.sh").read_text() == (
        DEPLOY / "postgres" / "init-databases.sh").read_text()


# --- compose ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    """deploy/compose.yaml, with YAML anchors and merge keys resolved."""
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_file_follows_the_compose_specification(compose, compose_spec_schema):
    errors = list(jsonschema.Draft7Validator(compose_spec_schema).iter_errors(compose))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors[:10])
    broken = json.loads(json.dumps(compose))
    broken["services"]["kafka"]["restart"] = ["always"]
    assert not jsonschema.Draft7Validator(compose_spec_schema).is_valid(broken)


def test_compose_runs_api_worker_migration_and_topic_job_per_service(compose):
    services = compose["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version()}"
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for svc in SERVICES:
        up = svc.upper()
        for role in ("api", "worker", "migrate", "topics"):
            s = services[f"{svc}-{role}"]
            assert s["command"] == [role]
            assert s["image"].endswith(f"/{svc}:${{IMAGE_TAG:-dev}}")
            env = s["environment"]
            assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
            assert env[f"{up}_DATABASE_URL"].endswith(f"@postgres:5432/{svc}")
            assert env[f"{up}_RUN_MIGRATIONS"] == "false"
        assert services[f"{svc}-migrate"]["build"]["args"] == {"SERVICE": svc}
        ready = services[f"{svc}-api"]["depends_on"]
        assert ready[f"{svc}-migrate"]["condition"] == "service_completed_successfully"
        assert ready[f"{svc}-topics"]["condition"] == "service_completed_successfully"
    for name, s in services.items():  # everything depended on exists; everything mounted exists
        for dep in s.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        for vol in s.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), f"{name} mounts missing {src}"


def test_prometheus_in_compose_scrapes_every_api_and_worker(compose):
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "cjrh-services")
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{svc}-{role}:8000" for svc in SERVICES for role in ("api", "worker")}
    assert all(t.split(":")[0] in compose["services"] for t in targets)


# --- Prometheus and Grafana -------------------------------------------------------------------------------------

def test_promtool_accepts_the_config_and_the_rules(promtool):
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"],
                 ["test", "rules", "alerts_test.yml"]):
        proc = subprocess.run([promtool, *args], cwd=DEPLOY / "prometheus", capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alert_rules_cover_the_operational_risks_and_query_exported_metrics():
    rules = [r for g in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
             for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert {"OutboxStuck", "DeadLettersGrowing", "ReadinessFailing", "HighErrorRate", "ConsumerLagHigh",
            "ConsumerStalled", "DeadLetterFailing"} <= names
    for rule in rules:
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= EXPORTED, f"{rule['alert']} queries metrics nobody exports: {used - EXPORTED}"


def test_the_metric_name_check_can_fail():
    assert metric_names('sum(rate(http_requests_totl{service="x"}[5m]))') - EXPORTED == {"http_requests_totl"}


def _dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))}


def test_dashboards_are_current_valid_and_query_exported_metrics():
    proc = subprocess.run([sys.executable, str(DEPLOY / "grafana" / "build_dashboards.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    dashboards = _dashboards()
    assert set(dashboards) == {f"{svc}.json" for svc in SERVICES} | {"event-pipeline.json"}
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    for name, dash in dashboards.items():
        panels = [p for p in dash["panels"] if p["type"] != "row"]
        assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"]), f"{name}: duplicate panel ids"
        for panel in panels:
            assert panel["datasource"]["uid"] == uid
            for target in panel["targets"]:
                used = metric_names(target["expr"])
                assert used and used <= EXPORTED, f"{name} / {panel['title']}: {used - EXPORTED}"
        titles = " ".join(p["title"].lower() for p in panels)
        for topic in ("latency", "outbox", "lag", "dead"):
            assert topic in titles, f"{name} lacks a {topic} panel"


def test_grafana_provisioning_points_at_the_dashboards_folder(compose):
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "dashboards.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    mounts = dict(v.split(":")[:2][::-1] for v in compose["services"]["grafana"]["volumes"] if v.startswith("."))
    assert mounts[path] == "./grafana/dashboards"


# --- image ------------------------------------------------------------------------------------------------------

def test_dockerfile_is_multi_stage_pinned_non_root_with_a_healthcheck():
    text = (DEPLOY / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert re.search(r"^USER 10001", text, re.M)
    assert re.search(r"^HEALTHCHECK .*ops\.py.*healthcheck", text, re.M)
    assert re.search(r'^ENTRYPOINT \["python", "/app/ops.py"\]', text, re.M)
    assert "--no-deps" not in text, "the service's own dependencies (jieba, openpyxl, ...) must be installed"
    for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (ROOT / src.replace("${SERVICE}", SERVICES[0])).exists(), src
