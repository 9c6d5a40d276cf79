"""Offline checks of the deployment files: Kubernetes, compose, Prometheus, Grafana and the Dockerfile."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import common.metrics
from tests.deploy.promql import PROMETHEUS_OWN, exported_names, metric_names

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))
KUBERNETES_VERSION = "1.32.0"
CRDS = DEPLOY / "k8s" / "crds"
EXPORTED = exported_names(common.metrics) | PROMETHEUS_OWN


def kafka_version() -> str:
    """The Kafka version the tests run (deploy/kafka/pom.xml)."""
    return re.search(r"<kafka.version>([^<]+)</kafka.version>", (DEPLOY / "kafka" / "pom.xml").read_text()).group(1)


def is_custom(doc: dict) -> bool:
    """A resource served by an operator's CRD rather than by Kubernetes itself (its API group is a DNS name)."""
    group = doc["apiVersion"].rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def custom_schemas() -> dict[str, dict]:
    """apiVersion -> our JSON Schema of that API's kinds (deploy/k8s/crds/<group>_<version>.yaml)."""
    out = {}
    for path in sorted(CRDS.glob("*_*.yaml")):
        group, version = path.stem.rsplit("_", 1)
        out[f"{group}/{version}"] = yaml.safe_load(path.read_text())
    return out


def custom_resource_errors(doc: dict) -> list[str]:
    """What the operator's schema finds wrong in one custom resource (an unknown apiVersion or kind is an error)."""
    schemas = custom_schemas()
    schema = schemas.get(doc["apiVersion"])
    if schema is None:
        return [f"no schema for {doc['apiVersion']} in deploy/k8s/crds (served there: {sorted(schemas)})"]
    if doc["kind"] not in schema["$defs"]:
        return [f"{doc['apiVersion']} has no kind {doc['kind']} in deploy/k8s/crds"]
    validator = jsonschema.Draft202012Validator({**schema, "$ref": f"#/$defs/{doc['kind']}"})
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(doc)]


def _containers(doc: dict) -> list[dict]:
    return doc["spec"]["template"]["spec"]["containers"]


def _by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


# --- Kubernetes -------------------------------------------------------------------------------------------------

def test_every_built_in_resource_validates_against_the_kubernetes_schemas(kustomize_builds, kubernetes_validate):
    for build, docs in kustomize_builds.items():
        for doc in docs:
            if is_custom(doc):
                continue
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{build}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_every_custom_resource_validates_against_its_operators_schema(kustomize_builds):
    seen = set()
    for build, docs in kustomize_builds.items():
        for doc in filter(is_custom, docs):
            seen.add(doc["kind"])
            errors = custom_resource_errors(doc)
            assert not errors, f"{build}: {doc['kind']}/{doc['metadata']['name']}:\n" + "\n".join(errors)
    assert {"Kafka", "KafkaNodePool", "PodMonitor", "PrometheusRule"} <= seen


def test_the_custom_resource_validation_can_fail(kustomize_builds):
    kafka = next(d for d in kustomize_builds["prod"] if d["kind"] == "Kafka")
    assert not custom_resource_errors(kafka)
    old_api = {**kafka, "apiVersion": "kafka.strimzi.io/v1beta2"}
    assert custom_resource_errors(old_api) and "no schema" in custom_resource_errors(old_api)[0]
    misspelt = json.loads(json.dumps(kafka))
    misspelt["spec"]["kafka"]["listeners"][0]["tlss"] = False
    assert any("tlss" in e for e in custom_resource_errors(misspelt))
    bad_port = json.loads(json.dumps(kafka))
    bad_port["spec"]["kafka"]["listeners"][0]["port"] = 9000  # Strimzi keeps ports below 9092 for itself
    assert custom_resource_errors(bad_port)
    pool = next(d for d in kustomize_builds["prod"] if d["kind"] == "KafkaNodePool")
    orphan = json.loads(json.dumps(pool))
    del orphan["metadata"]["labels"]["strimzi.io/cluster"]
    assert custom_resource_errors(orphan)


def test_one_kafka_version_everywhere_and_the_pinned_strimzi_release_runs_it(kustomize_builds):
    strimzi = custom_schemas()["kafka.strimzi.io/v1"]
    assert kafka_version() in strimzi["x-supported-kafka-versions"], (
        f"Strimzi {strimzi['x-strimzi-release']} does not run Kafka {kafka_version()}")
    texts = {p: p.read_text() for p in [DEPLOY / "compose.yaml", *sorted((DEPLOY / "k8s").rglob("*.yaml")),
                                        ROOT / "docs" / "operations.md"]}
    named = {(path.relative_to(ROOT).as_posix(), version) for path, text in texts.items()
             for version in re.findall(r"apache/kafka:([\w.-]+)|Kafka (\d+\.\d+\.\d+)", text)}
    assert {(path, a or b) for path, (a, b) in named} == {(path, kafka_version()) for path, _ in named}
    assert {"deploy/compose.yaml", "deploy/k8s/overlays/dev/kafka.yaml"} <= {path for path, _ in named}
    prod = kustomize_builds["prod"]
    assert next(d for d in prod if d["kind"] == "Kafka")["spec"]["kafka"]["version"] == kafka_version()


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
    for hpa in hpas.values():  # the HPA alone sets the count: a replicas field would reset it on every apply
        target = deployments[hpa["spec"]["scaleTargetRef"]["name"]]
        assert "replicas" not in target["spec"], f"{build}: {target['metadata']['name']} sets replicas under an HPA"
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


def _production_settings(env: dict[str, str]):
    """The shared settings a process would build from `env`, outside development mode (raises if it would refuse)."""
    import os
    from unittest import mock

    from common.config import ServiceSettings

    trust = {k: v for k, v in env.items() if k.startswith(("JWT_", "JWKS_"))}
    with mock.patch.dict(os.environ, trust):  # read as the process would read them, from its environment
        return ServiceSettings(dev_mode=False)


def test_every_kubernetes_process_gets_an_issuer_an_audience_and_the_secret_it_starts_with(kustomize_builds):
    for build, docs in kustomize_builds.items():
        maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
        for d in docs:
            if d["kind"] not in ("Deployment", "Job"):
                continue
            if d["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") != "cjrh-platform":
                continue  # not a platform process (e.g. the dev overlay's Mailpit)
            for c in _containers(d) if d["kind"] == "Deployment" else d["spec"]["template"]["spec"]["containers"]:
                env: dict[str, str] = {}
                for src in c.get("envFrom", []):
                    if "configMapRef" in src:
                        env.update(maps[src["configMapRef"]["name"]])
                refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c.get("env", [])
                        if "secretKeyRef" in e.get("valueFrom", {})}
                where = f"{build}: {d['kind']}/{d['metadata']['name']}"
                assert refs.get("JWT_SECRET", {}).get("name") == "cjrh-jwt", f"{where} lacks JWT_SECRET"
                assert "DEV_MODE" not in env, f"{where} runs in development mode"
                env["JWT_SECRET"] = "a-secret-from-the-cjrh-jwt-secret-0123456789"
                assert _production_settings(env).jwt_issuer, where


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


def _egress_ports(policy: dict, label: str) -> set[int]:
    """The ports a NetworkPolicy lets its pods reach on pods carrying `label`="true" (in any namespace)."""
    return {port["port"] for rule in policy["spec"]["egress"] for peer in rule["to"]
            if peer.get("podSelector", {}).get("matchLabels", {}).get(label) == "true" for port in rule["ports"]}


def _notify_channels(docs: list[dict]) -> dict[str, str]:
    """The NOTIFY_* channel settings every notify Deployment takes from its ConfigMap."""
    maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    found = []
    for d in (d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("notify-")):
        refs = [e["configMapRef"]["name"] for e in _containers(d)[0]["envFrom"] if "configMapRef" in e]
        found.append({k: v for ref in refs for k, v in maps[ref].items() if k.startswith("NOTIFY_")})
    assert found and all(f == found[0] for f in found)
    return found[0]


@pytest.mark.parametrize("build", ["dev", "prod"])
def test_notify_is_configured_and_allowed_to_send_mail_sms_and_webhooks(kustomize_builds, build):
    docs = kustomize_builds[build]
    channels = _notify_channels(docs)
    policy = _by_kind(docs, "NetworkPolicy")["notify-egress"]
    assert int(channels["NOTIFY_SMTP_PORT"]) in _egress_ports(policy, "cjrh.sh.cn/smtp-relay")
    assert channels["NOTIFY_SMTP_HOST"] not in ("", "127.0.0.1", "localhost")
    if build == "prod":
        proxy = channels["NOTIFY_HTTP_PROXY"]
        assert int(proxy.rsplit(":", 1)[1]) in _egress_ports(policy, "cjrh.sh.cn/egress-proxy")
        assert channels["NOTIFY_SMS_URL"].startswith("https://")
    else:  # dev: its own mail catcher is the relay, under the name and port notify is given
        relay = next(d for d in docs if d["kind"] == "Deployment"
                     and d["spec"]["template"]["metadata"]["labels"].get("cjrh.sh.cn/smtp-relay") == "true")
        service = _by_kind(docs, "Service")[channels["NOTIFY_SMTP_HOST"]]
        assert service["spec"]["selector"].items() <= relay["spec"]["template"]["metadata"]["labels"].items()
        assert int(channels["NOTIFY_SMTP_PORT"]) in {p["port"] for p in service["spec"]["ports"]}
    for d in (d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("notify-")):
        assert {"secretRef": {"name": "notify-channels", "optional": True}} in _containers(d)[0]["envFrom"]


def test_only_notify_may_reach_the_mail_relay_and_the_egress_proxy(kustomize_builds):
    for name, policy in _by_kind(kustomize_builds["prod"], "NetworkPolicy").items():
        if name != "notify-egress" and "egress" in policy["spec"]:
            assert not _egress_ports(policy, "cjrh.sh.cn/smtp-relay") | _egress_ports(policy, "cjrh.sh.cn/egress-proxy")


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
    assert kafka["apiVersion"] == pool["apiVersion"] == "kafka.strimzi.io/v1"
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
    deployments = _by_kind(kustomize_builds[build], "Deployment")
    for svc in SERVICES:  # the service knows the prefix the Ingress strips, so its /docs name reachable URLs
        env = {e["name"]: e.get("value") for e in _containers(deployments[f"{svc}-api"])[0]["env"]}
        assert env[f"{svc.upper()}_ROOT_PATH"] == f"/{svc}"
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


def test_compose_publishes_every_port_on_loopback_only_and_checks_every_long_running_service(compose):
    for name, s in compose["services"].items():
        for port in s.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
        if s.get("restart") != "no":
            assert "healthcheck" in s, f"{name} has no healthcheck"


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
            if src.startswith("../.local/"):
                continue  # generated secrets (`make compose-secrets`): tests/deploy/test_kafka_access.py checks them
            if src.startswith("."):
                assert (DEPLOY / src).exists(), f"{name} mounts missing {src}"


def test_compose_notify_sends_mail_to_the_mail_catcher_and_takes_its_channels_from_the_environment(compose):
    services = compose["services"]
    for role in ("api", "worker"):
        env = services[f"notify-{role}"]["environment"]
        assert {"NOTIFY_SMTP_HOST", "NOTIFY_SMTP_PORT", "NOTIFY_SMS_URL", "NOTIFY_SMS_API_KEY",
                "NOTIFY_HTTP_PROXY"} <= env.keys()
        assert env["NOTIFY_SMTP_HOST"] == "${NOTIFY_SMTP_HOST:-mailpit}" and "mailpit" in services
        assert env["NOTIFY_SMTP_PORT"] == "${NOTIFY_SMTP_PORT:-1025}"
def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR:-default} and ${VAR:?message} interpolation (enough for this file)."""
    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise LookupError(f"{name}: {arg}")
        return arg
    return re.sub(r"\$\{([A-Z0-9_]+)(:-|:\?)?([^}]*)\}", one, value)


def test_compose_services_start_outside_development_mode_only_with_a_secret_from_the_environment(compose):
    for svc in SERVICES:
        for role in ("api", "worker", "migrate", "topics"):
            env = {k: str(v) for k, v in compose["services"][f"{svc}-{role}"]["environment"].items()}
            assert "DEV_MODE" not in env
            with pytest.raises(LookupError, match="JWT_SECRET"):
                {k: _interpolate(v, {}) for k, v in env.items()}
            resolved = {k: _interpolate(v, {"JWT_SECRET": "from-deploy-env-file-0123456789abcdef"})
                        for k, v in env.items()}
            settings = _production_settings(resolved)
            assert settings.jwt_issuer and settings.jwt_audience


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


def relabel(labels: dict[str, str], configs: list[dict]) -> dict[str, str]:
    """Prometheus' `replace` relabelling (the only action our configs use), in compose or operator spelling."""
    def get(cfg: dict, *names: str):
        return next((cfg[n] for n in names if n in cfg), None)

    out = dict(labels)
    for cfg in configs:
        assert get(cfg, "action") in (None, "replace", "Replace"), cfg
        source = get(cfg, "source_labels", "sourceLabels") or []
        value = (get(cfg, "separator") or ";").join(out.get(name, "") for name in source)
        match = re.fullmatch(get(cfg, "regex") or "(.*)", value)
        if match:
            template = get(cfg, "replacement") if get(cfg, "replacement") is not None else "$1"
            groups = (match.group(0), *match.groups())
            out[get(cfg, "target_label", "targetLabel")] = re.sub(
                r"\$\{?(\d+)\}?", lambda m, groups=groups: groups[int(m.group(1))] or "", template)
    return {k: v for k, v in out.items() if not k.startswith("__") and v != ""}


def compose_target_labels(address: str) -> dict[str, str]:
    """The labels compose's Prometheus gives the target at `address` (deploy/prometheus/prometheus.yml)."""
    job = next(j for j in yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
               if any(address in sc["targets"] for sc in j.get("static_configs", [])))
    static = next(sc for sc in job["static_configs"] if address in sc["targets"])
    labels = {"job": job["job_name"], "instance": address, "__address__": address, **static.get("labels", {})}
    return relabel(labels, job.get("relabel_configs", []))


def kubernetes_target_labels(pod_labels: dict[str, str], monitor: dict, *, namespace: str = "cjrh") -> dict[str, str]:
    """The labels the Prometheus operator gives a pod's target: its own defaults, then the PodMonitor's relabelings."""
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    meta = {f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}": v for k, v in pod_labels.items()}
    defaults = {"job": f"{namespace}/{monitor['metadata']['name']}", "namespace": namespace,
                "pod": f"{pod_labels['app.kubernetes.io/name']}-api-7d9f8b6c5-x2x4q",
                "container": pod_labels["app.kubernetes.io/name"], "endpoint": endpoint["port"],
                "instance": "10.244.1.17:8000", **meta}
    return relabel(defaults, endpoint.get("relabelings", []))


def test_service_down_fires_for_a_target_labelled_as_compose_or_kubernetes_labels_it(promtool, tmp_path,
                                                                                     kustomize_builds):
    prod = kustomize_builds["prod"]
    monitor = next(d for d in prod if d["kind"] == "PodMonitor")
    pod = next(d for d in prod if d["kind"] == "Deployment" and d["metadata"]["name"] == "registry-api")
    down = {"compose": compose_target_labels("registry-api:8000"),
            "kubernetes": kubernetes_target_labels(pod["spec"]["template"]["metadata"]["labels"], monitor)}
    healthy = compose_target_labels("matching-worker:8000")
    unrelabelled = kubernetes_target_labels(pod["spec"]["template"]["metadata"]["labels"],
                                            {**monitor, "spec": {"podMetricsEndpoints": [{"port": "http"}]}})
    assert unrelabelled["job"] == "cjrh/cjrh-platform"  # what the operator names the job on its own

    def series(labels: dict[str, str]) -> str:
        return "up{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"

    tests = {"rule_files": [str(DEPLOY / "prometheus" / "alerts.yml")], "evaluation_interval": "30s", "tests": [{
        "interval": "30s",
        "input_series": [{"series": series(labels), "values": "1 1 0 0 0 0 0 0 0 0"} for labels in down.values()]
                        + [{"series": series(healthy), "values": "1 1 1 1 1 1 1 1 1 1"}],
        "alert_rule_test": [
            {"eval_time": "1m", "alertname": "ServiceDown", "exp_alerts": []},
            {"eval_time": "4m", "alertname": "ServiceDown", "exp_alerts": [
                {"exp_labels": {**labels, "severity": "critical"},
                 "exp_annotations": {"summary": f"{labels['instance']} cannot be scraped",
                                     "runbook": "docs/operations.md#readiness"}}
                for labels in down.values()]},
        ]}]}
    (tmp_path / "service_down_test.yml").write_text(yaml.safe_dump(tests))
    proc = subprocess.run([promtool, "test", "rules", "service_down_test.yml"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert down["kubernetes"]["instance_service"] == down["compose"]["instance_service"] == "registry"
    assert down["kubernetes"]["role"] == down["compose"]["role"] == "api"


def test_the_prometheus_rule_is_generated_from_the_alert_rules():
    proc = subprocess.run([sys.executable, str(DEPLOY / "prometheus" / "build_rules.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rule = yaml.safe_load((DEPLOY / "k8s" / "components" / "monitoring" / "prometheusrule.yaml").read_text())
    assert rule["spec"]["groups"] == yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]


def test_the_dev_overlay_needs_no_prometheus_operator_and_prod_has_its_resources(kustomize_builds):
    operator_kinds = {"PodMonitor", "PrometheusRule", "ServiceMonitor"}
    for build in ("base", "dev"):
        assert not {d["kind"] for d in kustomize_builds[build]} & operator_kinds, build
    assert {"PodMonitor", "PrometheusRule"} <= {d["kind"] for d in kustomize_builds["prod"]}


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
    provisioned = datasource["datasources"][0]
    assert provisioned["isDefault"] is True  # what the dashboards' variable picks first
    for name, dash in dashboards.items():
        panels = [p for p in dash["panels"] if p["type"] != "row"]
        assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"]), f"{name}: duplicate panel ids"
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        uids = {m for m in re.findall(r'"uid": "([^"]*)"', json.dumps(dash)) if m != dash["uid"]}
        assert uids == {"${datasource}"}, f"{name} hard-codes a datasource: {uids}"
        for panel in panels:
            assert panel["datasource"]["uid"] == "${datasource}"
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


# --- pinned dependencies ----------------------------------------------------------------------------------------

def _pins() -> dict[str, str]:
    """constraints.txt: canonical package name -> pinned version."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version and " " not in version, f"not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def _declared() -> set[str]:
    """Every third-party requirement named by the pyprojects and requirement files `make install` reads."""
    import tomllib

    names = set()
    for path in [ROOT / "libs" / "common" / "pyproject.toml", *sorted((ROOT / "services").glob("*/pyproject.toml"))]:
        names |= {Requirement(r).name for r in tomllib.loads(path.read_text())["project"].get("dependencies", [])}
    for path in (ROOT / "requirements-dev.txt", DEPLOY / "requirements-ops.txt"):
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                names.add(Requirement(line).name)
    return {canonicalize_name(n) for n in names if not n.startswith("cjrh-")}


def test_every_dependency_is_pinned_and_every_install_uses_the_pins():
    pins = _pins()
    assert _declared() <= pins.keys(), f"not in constraints.txt (run make lock): {_declared() - pins.keys()}"
    assert not [n for n in pins if n.startswith("cjrh-")], "the platform's own packages are not pinned"
    makefile = (ROOT / "Makefile").read_text()
    install = makefile[makefile.index("$(STAMP):"):makefile.index("install: $(STAMP)")]
    assert "$(CONSTRAINTS)" in install.splitlines()[0] and "-c $(CONSTRAINTS)" in install
    assert re.search(r"^CONSTRAINTS := constraints\.txt$", makefile, re.M) and re.search(r"^lock: ", makefile, re.M)
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    installs = re.findall(r"pip install (.*)", dockerfile)
    assert installs and all("-c /app/constraints.txt" in i for i in installs), installs
    assert "!constraints.txt" in (DEPLOY / "Dockerfile.dockerignore").read_text()


def test_the_test_environment_is_the_pinned_one():
    pins = _pins()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    differ = {n: (v, installed[n]) for n, v in pins.items() if n in installed and installed[n] != v}
    assert not differ, f"(pinned, installed) differ: run make install: {differ}"
