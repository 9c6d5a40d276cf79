"""Tracing in the deployment files: an optional collector and Jaeger in compose, Grafana's Jaeger datasource, and the
prod overlay's OTLP endpoint with the egress that lets spans reach it; off everywhere nobody configured it."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))
ROLES = ("api", "worker", "migrate", "topics")


@pytest.fixture(scope="module")
def compose() -> dict:
    """deploy/compose.yaml, with YAML anchors and merge keys resolved."""
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def collector() -> dict:
    """The OpenTelemetry collector configuration offered as a starting point for Kubernetes."""
    return yaml.safe_load((DEPLOY / "otel" / "collector.yaml").read_text())


def test_jaeger_runs_only_in_the_tracing_profile_on_a_pinned_image(compose):
    services = compose["services"]
    for name in ("jaeger",):
        s = services[name]
        assert s["profiles"] == ["tracing"], f"{name} must be optional"
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+", s["image"]), f"{name} image not pinned: {s['image']}"
        assert all(p.startswith("127.0.0.1:") for p in s.get("ports", [])), f"{name} binds beyond loopback"
    untraced = [n for n, s in services.items() if n != "jaeger" and s.get("profiles")]
    assert not untraced, "the platform itself runs without any profile"


def test_services_send_to_the_collector_only_when_the_endpoint_is_set(compose):
    text = (DEPLOY / "compose.yaml").read_text()
    assert "OTEL_EXPORTER_OTLP_ENDPOINT: ${OTEL_EXPORTER_OTLP_ENDPOINT:-}" in text, "empty by default: tracing off"
    for svc in SERVICES:
        for role in ROLES:
            assert "OTEL_EXPORTER_OTLP_ENDPOINT" in compose["services"][f"{svc}-{role}"]["environment"]


def test_compose_jaeger_takes_otlp_http_on_loopback_and_is_health_checked(compose):
    jaeger = compose["services"]["jaeger"]
    assert "127.0.0.1:4318:4318" in jaeger["ports"], "the services' OTLP/HTTP endpoint (http://jaeger:4318)"
    assert "healthcheck" in jaeger


def test_the_kubernetes_collector_config_receives_otlp_http_and_forwards_every_span(collector):
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    pipeline = collector["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline[kind]) <= set(collector[kind]), f"the traces pipeline names undeclared {kind}"
    assert "memory_limiter" in pipeline["processors"] and pipeline["processors"][-1] == "batch"


def test_grafana_has_the_jaeger_datasource_of_compose(compose):
    doc = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "jaeger.yml").read_text())
    [jaeger] = doc["datasources"]
    assert jaeger["type"] == "jaeger" and jaeger["uid"] == "jaeger"
    url = urlsplit(jaeger["url"])
    assert url.hostname == "jaeger" and url.port == 16686
    assert any(p.endswith(":16686") for p in compose["services"]["jaeger"]["ports"])
    mounts = [v for v in compose["services"]["grafana"]["volumes"] if v.startswith("./grafana/provisioning:")]
    assert mounts, "grafana must mount the provisioning folder that holds the datasource"


def _platform_config(docs: list[dict]) -> dict:
    return next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("cjrh-platform"))[
        "data"]


def test_prod_sends_traces_to_a_collector_it_may_reach_and_the_other_builds_trace_nothing(kustomize_builds):
    prod = kustomize_builds["prod"]
    endpoint = urlsplit(_platform_config(prod)["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.scheme == "http" and endpoint.port == 4318
    namespace = endpoint.hostname.split(".")[1]
    allowed = [
        (peer, rule["ports"])
        for policy in prod if policy["kind"] == "NetworkPolicy" and "Egress" in policy["spec"]["policyTypes"]
        and policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/part-of": "cjrh-platform"}
        for rule in policy["spec"].get("egress", []) for peer in rule["to"]
    ]
    assert any(peer.get("namespaceSelector", {}).get("matchLabels") == {"kubernetes.io/metadata.name": namespace}
               and peer.get("podSelector") and {"port": 4318, "protocol": "TCP"} in ports
               for peer, ports in allowed), "no egress from every platform pod to the collector's OTLP port"
    for build in ("base", "dev"):
        assert not any(k.startswith("OTEL_") for k in _platform_config(kustomize_builds[build])), build
