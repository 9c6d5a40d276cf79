"""The deployment's process model for real: the container commands (migrate, topics, api, worker) run as processes
against the session's Kafka broker and fresh PostgreSQL databases, a real Prometheus scrapes them, and the events they
publish validate against the AsyncAPI document."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import jsonschema
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.registry.tests.support import school
from tests.deploy.support import gen
from tests.support.harness import (
    ADMIN_PRINCIPAL,
    free_port,
    fresh_database,
    principal_security,
    token,
    tooling_security,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "deploy" / "docker" / "ops.py"
PREFIX = "cn.gov.sh.cjrh."


def _get_json(url: str, timeout: float = 3) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _poll(check, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.25)


class Stack:
    """The processes of the test: service roles and Prometheus, stopped together."""

    def __init__(self, tmp: Path, bootstrap: str) -> None:
        self.tmp = tmp
        self.bootstrap = bootstrap
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "LOG_JSON": "false", "LOG_LEVEL": "WARNING",
                    "OUTBOX_SWEEP_SECONDS": "0.2", "CONSUMER_BACKOFF_SECONDS": "0.05", "TOPIC_PARTITIONS": "3"}
        for svc in gen.service_names():
            self.env[f"{svc.upper()}_DATABASE_URL"] = asyncio.run(fresh_database(svc))
            self.env[f"{svc.upper()}_RUN_MIGRATIONS"] = "false"

    def command(self, svc: str, role: str, **env: str) -> subprocess.Popen:
        """Start `ops.py <role>` for a service, as the container would."""
        log = open(self.logs / f"{svc}-{role}.log", "wb")
        # Each role connects as the service's own principal; the topics job as the admin, as in compose.
        kafka = principal_security(self.bootstrap, ADMIN_PRINCIPAL if role == "topics" else svc).as_env()
        proc = subprocess.Popen([sys.executable, str(OPS), role], cwd=self.tmp,
                                env={**self.env, **kafka, "SERVICE": svc, **env}, stdout=log,
                                stderr=subprocess.STDOUT)
        self.procs.append((f"{svc}-{role}", proc))
        return proc

    def run_jobs(self, role: str) -> None:
        """Run a one-shot job (migrate, topics) for every service in parallel; each must exit 0."""
        jobs = {svc: self.command(svc, role) for svc in gen.service_names()}
        for svc, proc in jobs.items():
            assert proc.wait(timeout=120) == 0, f"{svc} {role} failed:\n{self.log(f'{svc}-{role}')}"

    def start_prometheus(self, targets: dict[str, int], port: int) -> None:
        """A real Prometheus scraping the targets every second, with the platform's alert rules loaded."""
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ROOT / "deploy" / "prometheus" / "alerts.yml")],
            "scrape_configs": [{
                "job_name": "cjrh-services", "scrape_timeout": "900ms",
                "static_configs": [{"targets": [f"127.0.0.1:{p}"], "labels": {"instance_service": name.split("-")[0],
                                                                               "role": name.split("-")[1]}}
                                   for name, p in targets.items()],
            }],
        }
        path = self.tmp / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        log = open(self.logs / "prometheus.log", "wb")
        proc = subprocess.Popen(
            ["prometheus", f"--config.file={path}", f"--storage.tsdb.path={self.tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        self.procs.append(("prometheus", proc))

    def log(self, name: str) -> str:
        """The tail of a process's log."""
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM everything, then wait (kill what does not stop)."""
        for _, p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **tooling_security(bootstrap).client_kwargs())
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _read_since(bootstrap: str, topics: list[str], since_ms: int, until) -> list:
    """Records of the topics written at or after `since_ms`, read until `until(records)` holds (or 30 s pass)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                isolation_level="read_committed", **tooling_security(bootstrap).client_kwargs())
    await consumer.start()
    records = []
    try:
        cluster = await consumer._client.fetch_all_metadata()
        tps = [TopicPartition(t, p) for t in topics for p in (cluster.partitions_for_topic(t) or ())]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)  # before the time lookup: nothing written in between is skipped
        offsets = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        for tp in tps:
            consumer.seek(tp, offsets[tp].offset if offsets[tp] is not None else ends[tp])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for recs in batch.values():
                records.extend(r for r in recs if r.timestamp >= since_ms)
            if until(records):
                break
        return records
    finally:
        await consumer.stop()


def test_the_platform_runs_as_container_roles_and_prometheus_sees_it(broker, tmp_path, prometheus_binary):
    stack = Stack(tmp_path, broker.bootstrap)
    plat = gen.read_platform()
    doc = yaml.safe_load(gen.DOC_PATH.read_text())
    schemas = doc["components"]["schemas"]
    ports = {f"{svc}-worker": free_port() for svc in gen.service_names()} | {"registry-api": free_port()}
    prom_port = free_port()
    try:
        stack.start_prometheus(ports, prom_port)
        stack.run_jobs("migrate")
        stack.run_jobs("topics")
        expected = {t for svc, topics in plat.published.items() for t in topics}
        expected |= {c.topic for c in plat.consumers} | {f"{c.topic}.dlq" for c in plat.consumers}
        assert expected <= asyncio.run(_topics(broker.bootstrap)), "the topics job did not create every topic"

        for name, port in ports.items():
            svc, role = name.split("-")
            stack.command(svc, role, PORT=str(port))
        for name, port in ports.items():
            _poll(lambda port=port: _status(f"http://127.0.0.1:{port}/readyz") == 200, timeout=120,
                  what=f"{name} ready\n{stack.log(name)}")

        watched = sorted(t for t in doc["channels"] if not t.endswith(".dlq")) + ["registry.institution.v1.dlq"]
        since_ms = int(time.time() * 1000) - 1000

        # A write through the API-only process: the worker process (not the API) publishes it from the outbox.
        body = json.dumps(school("上海部署测试职业技术学院")).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{ports['registry-api']}/institutions", data=body, method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token('office_admin')}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 201
            institution = json.loads(resp.read())

        def published(records):
            return any(r.topic == "registry.institution.v1" and json.loads(r.value)["subject"] == institution["id"]
                       for r in records)

        records = asyncio.run(_read_since(broker.bootstrap, watched, since_ms, published))
        assert published(records), "the registry worker never published the new institution"
        ours = next(json.loads(r.value) for r in records if r.topic == "registry.institution.v1"
                    and json.loads(r.value)["subject"] == institution["id"])

        # Every event the platform published during this test matches its topic's documented schema.
        for r in records:
            if r.topic.endswith(".dlq"):
                assert dict(r.headers).get("dlq.event_id") != ours["id"].encode(), (
                    f"a consumer dead-lettered the registry's own event: {dict(r.headers).get('dlq.reason')}")
                continue
            event = json.loads(r.value)
            name = event["type"].removeprefix(PREFIX)
            assert name in doc["channels"][r.topic]["messages"], f"{event['type']} on {r.topic} is undocumented"
            schema = gen.resolve(doc["components"]["messages"][name]["payload"], schemas)
            jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(event)

        api = f"http://127.0.0.1:{prom_port}/api/v1"

        def query(q: str) -> list[dict]:
            return _get_json(f"{api}/query?{urllib.parse.urlencode({'query': q})}")["data"]["result"]

        def all_up():
            targets = _get_json(f"{api}/targets")["data"]["activeTargets"]
            return len(targets) == len(ports) and all(t["health"] == "up" for t in targets)

        _poll(all_up, timeout=60, what=f"all targets up: {_get_json(f'{api}/targets')}")
        assert {r["metric"]["instance_service"] for r in query('up{job="cjrh-services"} == 1')} == set(
            gen.service_names())

        def histogram_everywhere():
            rows = query("count by (service) (http_request_duration_seconds_bucket)")
            return {r["metric"]["service"] for r in rows} >= set(gen.service_names())

        _poll(histogram_everywhere, timeout=30, what="the latency histogram of every service")

        consuming = {c.service for c in plat.consumers}
        # The consumers applied the event: consumed counters and lag series per consuming service.
        _poll(lambda: {r["metric"]["service"] for r in query(
            'sum by (service) (events_consumed_total{topic="registry.institution.v1"}) > 0')}
            >= {c.service for c in plat.consumers if c.topic == "registry.institution.v1"},
            timeout=60, what="every consumer of registry.institution.v1 to apply the event")
        _poll(lambda: {r["metric"]["service"] for r in query("count by (service) (consumer_lag)")} >= consuming,
              timeout=30, what=f"consumer_lag series of {sorted(consuming)}")
        _poll(lambda: query("sum(consumer_lag)") and float(query("sum(consumer_lag)")[0]["value"][1]) == 0,
              timeout=60, what="every consumer caught up")
        assert query('max(outbox_backlog{service="registry"})'), "outbox gauges are exported by the worker"

        rules = _get_json(f"{api}/rules")["data"]["groups"]
        assert {g["name"] for g in rules} >= {"cjrh-outbox", "cjrh-consumers", "cjrh-http"}
        assert all(r["health"] != "err" for g in rules for r in g["rules"]), rules
    finally:
        stack.stop()
