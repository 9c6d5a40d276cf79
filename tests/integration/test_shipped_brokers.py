"""The brokers we ship, run for real: compose's and the development Kubernetes overlay's Kafka, each started from the
very configuration it is given there (the generated server.properties plus the container's KAFKA_* variables, read
from deploy/compose.yaml and from the rendered dev overlay), on the broker jars the tests use. Then the kafka-access
job runs as it does there, with only Kafka settings in its environment, and each principal gets exactly its rights.

Only the addresses change (the container's host names and ports become free loopback ports): what is proven is the
security configuration, not Docker's or the image's start-up scripts."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from common.config import KafkaSettings
from common.kafka import KafkaSecurity
from tests.support.harness import ROOT, free_port, kafka_access

pytestmark = pytest.mark.integration

access = kafka_access()
MODEL = access.read_model()


def _broker_script():
    spec = importlib.util.spec_from_file_location("cjrh_broker_for_shipped", ROOT / "scripts" / "broker.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compose_env(service: str) -> dict[str, str]:
    """The environment compose gives `service`."""
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    return {k: str(v) for k, v in compose["services"][service]["environment"].items()}


def _k8s_dev_env(kind: str, name: str) -> dict[str, str]:
    """The literal environment of the dev overlay's `kind`/`name` (rendered by kustomize, as kubectl applies it)."""
    rendered = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy" / "k8s" / "overlays" / "dev")],
                              capture_output=True, text=True, check=True).stdout
    for doc in yaml.safe_load_all(rendered):
        if doc and doc["kind"] == kind and doc["metadata"]["name"] == name:
            [container] = doc["spec"]["template"]["spec"]["containers"]
            return {e["name"]: e["value"] for e in container["env"] if "value" in e}
    raise AssertionError(f"the dev overlay has no {kind} {name}")


def _image_properties(env: dict[str, str]) -> list[str]:
    """KAFKA_* variables as the apache/kafka image turns them into properties (`_` -> `.`, `__` -> `_`,
    `___` -> `-`)."""
    out = []
    for name, value in env.items():
        if not name.startswith("KAFKA_") or name in ("KAFKA_OPTS", "KAFKA_HEAP_OPTS", "KAFKA_JMX_OPTS"):
            continue
        key = name.removeprefix("KAFKA_").lower().replace("___", "-").replace("__", "\0").replace("_", ".")
        out.append(f"{key.replace(chr(0), '_')}={value}")
    return out


def _relocate(text: str, ports: dict[int, int]) -> str:
    """The container's addresses on loopback: host names become 127.0.0.1, known ports free ones."""
    def one(m: re.Match) -> str:
        lead, host, port = m.group(1), m.group(2), int(m.group(3))
        return f"{lead}{'127.0.0.1' if host in ('', 'kafka', 'localhost') else host}:{ports.get(port, port)}"
    return re.sub(r"(//|@)([A-Za-z0-9.\-]*):(\d+)", one, text)


class ShippedBroker:
    """One broker started from a shipped configuration, in `folder`."""

    def __init__(self, folder: Path, env: dict[str, str], extra: tuple[str, ...] = ()):
        self.folder, self.env, self.extra = folder, env, extra
        self.ports = {9092: free_port(), 19092: free_port(), 9093: free_port()}
        self.proc: subprocess.Popen | None = None

    @property
    def internal(self) -> str:
        return f"127.0.0.1:{self.ports[9092]}"

    @property
    def external(self) -> str:
        return f"127.0.0.1:{self.ports[19092]}"

    def start(self) -> None:
        broker = _broker_script()
        broker.fetch()
        files = self.folder / "files"
        server = (files / "server.properties").read_text().replace(access.BROKER_MOUNT, str(files))
        overrides = [_relocate(p, self.ports) for p in _image_properties(self.env)]
        overrides = [f"log.dirs={self.folder / 'data'}" if p.startswith("log.dirs=") else p for p in overrides]
        props = self.folder / "server.properties"
        props.write_text(server + "\n".join([*overrides, *self.extra]) + "\n")
        subprocess.run(broker._java_cmd("kafka.tools.StorageTool", "format", "-t", self.env["CLUSTER_ID"], "-c",
                                        str(props), heap="128m"), check=True, capture_output=True, text=True)
        log = open(self.folder / "broker.log", "ab")
        self.proc = subprocess.Popen(broker._java_cmd("kafka.Kafka", str(props)), stdout=log,
                                     stderr=subprocess.STDOUT)
        tls = ssl.create_default_context(cafile=str(files / "ca.pem"))
        deadline = time.monotonic() + 120
        while not broker._api_versions_ok("127.0.0.1", self.ports[9092], tls):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the shipped broker did not start:\n"
                                     + (self.folder / "broker.log").read_text()[-4000:])
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def security(self, principal: str, password: str | None = None) -> KafkaSecurity:
        """How `principal` logs in (SCRAM-SHA-512, the generated password unless another is given)."""
        env = dict(line.split("=", 1) for line in (self.folder / "files" / f"{principal}.env").read_text().split())
        return KafkaSecurity(username=principal, password=password or env["KAFKA_SASL_PASSWORD"],
                             cafile=str(self.folder / "files" / "ca.pem"))


def _kafka_access_job(broker: ShippedBroker, job_env: dict[str, str]) -> subprocess.CompletedProcess:
    """`ops.py kafka-access` with the job's environment only (no JWT, no database, no DEV_MODE), plus PATH."""
    files = broker.folder / "files"
    admin = dict(line.split("=", 1) for line in (files / "admin.env").read_text().split())
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.pathsep.join(sys.path), **admin,
           **{k: v.replace(access.BROKER_MOUNT, str(files)) for k, v in job_env.items()},
           "KAFKA_BOOTSTRAP_SERVERS": broker.internal}
    return subprocess.run([sys.executable, str(ROOT / "deploy" / "docker" / "ops.py"), "kafka-access",
                           str(files / "access.json")], env=env, capture_output=True, text=True, timeout=180)


SETUPS = {  # the broker's certificate names, its environment, the access job's environment
    "compose": (access.COMPOSE_BROKER_NAMES, lambda: _compose_env("kafka"), lambda: _compose_env("kafka-access")),
    "k8s-dev": (access.K8S_BROKER_NAMES, lambda: _k8s_dev_env("StatefulSet", "kafka"),
                lambda: _k8s_dev_env("Job", "kafka-access")),
}


@pytest.fixture(scope="module", params=sorted(SETUPS))
def shipped(request, tmp_path_factory):
    if request.param == "k8s-dev" and not shutil.which("kubectl"):
        pytest.fail("kubectl is needed to render the dev overlay (Debian package kubectl; .ci/run installs it)")
    names, broker_env, job_env = SETUPS[request.param]
    folder = tmp_path_factory.mktemp(f"shipped-{request.param}")
    access.broker_files(folder / "files", model=MODEL, names=names)
    broker = ShippedBroker(folder, broker_env())
    broker.start()
    done = _kafka_access_job(broker, job_env())
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        yield broker
    finally:
        broker.stop()


async def _produce(bootstrap: str, security: KafkaSecurity, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, request_timeout_ms=15000,
                                **security.client_kwargs())
    try:
        await producer.start()
        await producer.send_and_wait(topic, b'{"probe": true}', key=b"probe")
    finally:
        await producer.stop()


async def _read_one(bootstrap: str, security: KafkaSecurity, topic: str, group: str) -> None:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                                **security.client_kwargs())
    try:
        await consumer.start()
        batch = await consumer.getmany(timeout_ms=15000)
        assert any(batch.values()), f"nothing read from {topic}"
    finally:
        await consumer.stop()


async def test_the_access_job_creates_every_topic_of_the_contracts(shipped):
    from aiokafka.admin import AIOKafkaAdminClient

    admin_env = dict(line.split("=", 1) for line in (shipped.folder / "files" / "admin.env").read_text().split())
    admin = AIOKafkaAdminClient(bootstrap_servers=shipped.internal, **KafkaSecurity(
        mechanism="PLAIN", username=admin_env["KAFKA_SASL_USERNAME"], password=admin_env["KAFKA_SASL_PASSWORD"],
        cafile=str(shipped.folder / "files" / "ca.pem")).client_kwargs())
    await admin.start()
    try:
        assert set(MODEL.topics) <= set(await admin.list_topics())
    finally:
        await admin.close()


async def test_each_service_writes_what_it_publishes_and_reads_what_it_consumes(shipped):
    await _produce(shipped.internal, shipped.security("registry"), "registry.institution.v1")
    await _read_one(shipped.internal, shipped.security("matching"), "registry.institution.v1", "matching.probe")


async def test_a_municipal_platform_writes_only_its_inbound_topic_and_never_reads_contacts(shipped):
    platform = "human-resources"
    inbound = MODEL.principals[platform].writes[0]
    await _produce(shipped.external, shipped.security(platform), inbound)  # through the published/forwarded port
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(shipped.external, shipped.security(platform), "registry.institution.v1")
    await _produce(shipped.internal, shipped.security("registry"), "registry.contact.v1")  # there is one to read
    with pytest.raises(TopicAuthorizationFailedError):
        await _read_one(shipped.external, shipped.security(platform), "registry.contact.v1", f"{platform}.probe")


async def test_a_wrong_password_and_a_plaintext_client_are_refused(shipped):
    with pytest.raises(KafkaError):
        await asyncio.wait_for(_produce(shipped.internal, shipped.security("registry", "not-the-password"),
                                        "registry.institution.v1"), 60)
    with pytest.raises((KafkaError, asyncio.TimeoutError)):
        await asyncio.wait_for(_produce(shipped.internal, KafkaSecurity(protocol="PLAINTEXT"),
                                        "registry.institution.v1"), 20)


def test_the_access_plan_passwords_are_the_principals_env_files(shipped):
    plan = json.loads((shipped.folder / "files" / "access.json").read_text())
    assert set(plan["scram"]) == set(MODEL.principals)
    assert all(plan["scram"][p] == shipped.security(p).password for p in MODEL.principals)


def _client_certificate(folder: Path, name: str) -> tuple[str, str]:
    """A client certificate for `name` signed by the generated development CA: (certfile, keyfile) in PEM."""
    cert, key = _broker_script().leaf_certificate(folder, name, client=True, days=1)
    certfile, keyfile = folder / f"{name}-client.pem", folder / f"{name}-client-key.pem"
    certfile.write_bytes(cert)
    keyfile.write_bytes(key)
    return str(certfile), str(keyfile)


async def test_a_listener_that_asks_for_mutual_tls_admits_the_client_certificate_settings(tmp_path):
    """KAFKA_SSL_CERTFILE / KAFKA_SSL_KEYFILE, for a platform whose broker listener requires client certificates
    (ssl.client.auth=required on the external listener of compose's configuration): with its certificate the
    platform's client connects and writes; without one the TLS handshake is refused."""
    files = tmp_path / "files"
    access.broker_files(files, model=MODEL, names=access.COMPOSE_BROKER_NAMES)
    broker = ShippedBroker(tmp_path, _compose_env("kafka"),
                           extra=("listener.name.external.ssl.client.auth=required",))
    broker.start()
    try:
        done = _kafka_access_job(broker, _compose_env("kafka-access"))
        assert done.returncode == 0, done.stdout + done.stderr
        platform = "human-resources"
        certfile, keyfile = _client_certificate(files, platform)
        with_cert = dataclasses.replace(broker.security(platform), certfile=certfile, keyfile=keyfile)
        settings = KafkaSettings(**with_cert.as_env())  # as a client configured by environment would build it
        await _produce(broker.external, settings.kafka_security, MODEL.principals[platform].writes[0])
        with pytest.raises((KafkaError, asyncio.TimeoutError)):
            await asyncio.wait_for(_produce(broker.external, broker.security(platform),
                                            MODEL.principals[platform].writes[0]), 30)
    finally:
        broker.stop()
