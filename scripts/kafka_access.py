#!/usr/bin/env python3
"""Who may do what on Kafka, from one source: the services' own specs plus deploy/kafka/platforms.yaml.

    python scripts/kafka_access.py            write the Strimzi KafkaUser and KafkaTopic resources (deploy/k8s/...)
                                              and the topic owners consumers check (libs/common/common/...)
    python scripts/kafka_access.py --check    exit 1 if the committed resources differ from what the code says
    python scripts/kafka_access.py --print    list every principal's ACLs
    python scripts/kafka_access.py --compose-secrets   certificates, passwords and the access plan for compose
    python scripts/kafka_access.py --k8s-dev-secrets   the same as Secrets for the development Kubernetes overlay

Each service's principal (its name) may WRITE and DESCRIBE the topics it publishes and the dead-letter topics of what
it consumes, READ and DESCRIBE what it consumes, READ consumer groups named `<service>.*`, and IDEMPOTENT_WRITE the
cluster; nothing else (no CREATE: the topics job or the Strimzi topic operator creates topics as the admin). Each
municipal platform may WRITE its inbound topics, READ the public topics and what the office granted it, and READ groups
named `<platform>.*`. The same model gives the ACLs and SCRAM credentials `scripts/broker.py` applies to the
development broker (`apply`), and the topic owners a consumer checks each event's CloudEvents `source` against.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PLATFORMS = ROOT / "deploy" / "kafka" / "platforms.yaml"
OUT_DIR = ROOT / "deploy" / "k8s" / "overlays" / "prod" / "kafka-access"
OWNERS_PATH = ROOT / "libs" / "common" / "common" / "topic_owners.json"  # read by every consumer (common.consumer)
# The model flattened (principals, topics, ACLs; no passwords): what scripts/broker.py applies at every start, read in
# milliseconds instead of importing the four services.
ACCESS_PATH = ROOT / "deploy" / "kafka" / "access.json"
CLUSTER = "cjrh"  # the Strimzi Kafka resource's name (deploy/k8s/overlays/prod/kafka.yaml)
ADMIN = "kafka-admin"  # super user: the topics job and the ACL setup only
BROKER = "kafka-broker"  # the development broker's own inter-broker principal (super user)
CONTROLLER = "kafka-controller"  # the development broker's controller listener (super user)
STRIMZI_API = "kafka.strimzi.io/v1"

for _p in [ROOT / "libs" / "common", *sorted((ROOT / "services").glob("*"))]:
    if _p.is_dir() and str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


class AccessModelError(ValueError):
    """platforms.yaml and the services' contracts disagree (an unclassified topic, a write to an unknown topic...)."""


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule: `principal` may `operation` on a topic, group (literal or prefix) or the cluster."""

    principal: str
    resource: str  # topic | group | cluster
    name: str
    pattern: str  # literal | prefix
    operation: str  # Read | Write | Describe | IdempotentWrite


@dataclass
class Principal:
    """A service or a municipal platform, with the topics it writes and reads."""

    name: str
    kind: str  # service | platform
    writes: list[str]
    reads: list[str]
    sources: list[str] = field(default_factory=list)

    @property
    def group_prefix(self) -> str:
        """Consumer groups this principal may use: `<name>.<anything>`."""
        return f"{self.name}."

    def acls(self) -> list[Acl]:
        """Least privilege: what it writes, what it reads, its own groups, idempotent producing."""
        out = []
        for t in self.writes:
            out += [Acl(self.name, "topic", t, "literal", "Write"), Acl(self.name, "topic", t, "literal", "Describe")]
        for t in self.reads:
            out += [Acl(self.name, "topic", t, "literal", "Read"), Acl(self.name, "topic", t, "literal", "Describe")]
        out.append(Acl(self.name, "group", self.group_prefix, "prefix", "Read"))
        out.append(Acl(self.name, "cluster", "kafka-cluster", "literal", "IdempotentWrite"))
        return sorted(set(out))


@dataclass
class Topic:
    """A topic the platform needs, with its kind (events, inbound, dead-letter)."""

    name: str
    kind: str


@dataclass
class AccessModel:
    """Principals, topics and topic settings: everything the generated ACLs and manifests come from."""

    principals: dict[str, Principal]
    topics: dict[str, Topic]
    public: list[str]
    internal: list[str]
    topic_settings: dict

    def acls(self) -> list[Acl]:
        """Every ACL of every principal."""
        return sorted(a for p in self.principals.values() for a in p.acls())

    def owners(self) -> dict[str, list[str]]:
        """The CloudEvents sources each topic's events may carry: its publishing service, or its platforms."""
        owners: dict[str, list[str]] = {}
        for p in self.principals.values():
            for t in p.writes:
                if not t.endswith(".dlq"):
                    owners.setdefault(t, []).extend(p.sources)
        return {t: sorted(set(s)) for t, s in sorted(owners.items())}

    def owners_document(self) -> dict:
        """What consumers check an event's `source` against: per topic, its publishing service (whose source is
        EVENT_SOURCE_BASE/<service> in any deployment) or the fixed sources of the platforms that write it."""
        topics: dict[str, dict] = {}
        for p in self.principals.values():
            for t in p.writes:
                if t.endswith(".dlq"):
                    continue
                entry = topics.setdefault(t, {"services": [], "sources": []})
                if p.kind == "service":
                    entry["services"].append(p.name)
                else:
                    entry["sources"] += p.sources
        return {"generated_by": "scripts/kafka_access.py from deploy/kafka/platforms.yaml and the services' specs",
                "topics": {t: {k: sorted(set(v)) for k, v in e.items()} for t, e in sorted(topics.items())}}


def dead_letter(topic: str) -> str:
    """The dead-letter topic of `topic` (as common.events.dead_letter_topic says)."""
    return f"{topic}.dlq"


def service_names() -> list[str]:
    """The services in the repository (a folder under services/ with a pyproject.toml)."""
    return sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))


def service_topics() -> dict[str, tuple[list[str], list[str]]]:
    """For each service, from its own ServiceSpec: (topics it publishes, topics it consumes)."""
    out = {}
    for svc in service_names():
        # built only to read its spec, with development settings (it never serves a request)
        settings = importlib.import_module(f"{svc}.config").Settings(dev_mode=True)
        spec = importlib.import_module(f"{svc}.main").create_app(settings).state.spec
        consumed = sorted({sub.topic for c in spec.consumers for sub in c.subscriptions})
        out[svc] = (sorted(set(spec.published_topics)), consumed)
    return out


def build_model(platforms_doc: dict, services: dict[str, tuple[list[str], list[str]]], *, source_base: str,
                ) -> AccessModel:
    """Check the platforms file against the services' topics and derive principals and topics."""
    public, internal = list(platforms_doc["public_topics"]), list(platforms_doc["internal_topics"])
    published = {t for pub, _ in services.values() for t in pub}
    consumed = {t for _, con in services.values() for t in con}
    inbound = sorted(consumed - published)
    problems = []
    for t in sorted(published):
        if (t in public) + (t in internal) != 1:
            problems.append(f"{t} is published by a service: list it once, under public_topics or internal_topics")
    for t in sorted(set(public) | set(internal)):
        if t not in published:
            problems.append(f"{t} is classified but no service publishes it")
    principals: dict[str, Principal] = {}
    for svc, (pub, con) in services.items():
        principals[svc] = Principal(svc, "service", writes=sorted(pub + [dead_letter(t) for t in con]), reads=con,
                                    sources=[f"{source_base}/{svc}"])
    dlqs = {dead_letter(t) for t in consumed}
    for name, p in (platforms_doc.get("platforms") or {}).items():
        if name in principals or name in (ADMIN, BROKER, CONTROLLER):
            problems.append(f"platform {name!r} would share a principal with a service or the broker")
        writes, grants = list(p.get("writes") or []), list(p.get("grants") or [])
        for t in writes:
            if t not in inbound:
                problems.append(f"platform {name!r} may only write inbound topics ({', '.join(inbound)}), not {t}")
        for t in grants:
            if t not in published | dlqs | set(inbound):
                problems.append(f"platform {name!r} is granted unknown topic {t}")
        if writes and not p.get("sources"):
            problems.append(f"platform {name!r} writes but declares no CloudEvents sources")
        principals[name] = Principal(name, "platform", writes=sorted(writes), reads=sorted(set(public) | set(grants)),
                                     sources=sorted(p.get("sources") or []))
    if problems:
        raise AccessModelError("deploy/kafka/platforms.yaml: " + "; ".join(problems))
    topics = {t: Topic(t, "events") for t in published}
    topics |= {t: Topic(t, "inbound") for t in inbound}
    topics |= {t: Topic(t, "dead-letter") for t in dlqs}
    return AccessModel(principals=dict(sorted(principals.items())), topics=dict(sorted(topics.items())),
                       public=public, internal=internal, topic_settings=dict(platforms_doc["topics"]))


def read_model(path: Path = PLATFORMS) -> AccessModel:
    """The model from the repository: deploy/kafka/platforms.yaml and every service's code."""
    from common.config import ServiceSettings

    base = ServiceSettings.model_fields["event_source_base"].default
    return build_model(yaml.safe_load(path.read_text()), service_topics(), source_base=base)


# --- Strimzi resources ------------------------------------------------------------------------------------------

HEADER = ("# Generated by scripts/kafka_access.py from deploy/kafka/platforms.yaml and the services' contracts.\n"
          "# Do not edit: change those and run `.venv/bin/python scripts/kafka_access.py` (a test checks for drift).\n")


def kafka_user(p: Principal) -> dict:
    """A Strimzi KafkaUser: SCRAM-SHA-512 credentials (in a Secret named like the user) and simple ACLs."""
    grouped: dict[tuple, list[str]] = {}
    for a in p.acls():
        grouped.setdefault((a.resource, a.name, a.pattern), []).append(a.operation)
    acls = []
    for (resource, name, pattern), ops in grouped.items():
        res = {"type": resource} if resource == "cluster" else {"type": resource, "name": name, "patternType": pattern}
        acls.append({"resource": res, "operations": sorted(ops)})
    return {
        "apiVersion": STRIMZI_API, "kind": "KafkaUser",
        "metadata": {"name": p.name, "labels": {"strimzi.io/cluster": CLUSTER,
                                                 "cjrh.sh.cn/principal-kind": p.kind}},
        "spec": {"authentication": {"type": "scram-sha-512"},
                 "authorization": {"type": "simple", "acls": acls}},
    }


def kafka_topic(t: Topic, settings: dict) -> dict:
    """A Strimzi KafkaTopic: partitions, three replicas, min.insync.replicas 2, retention (longer for dead letters)
    and the platform's one record limit (libs/common/common/limits.py)."""
    from common.limits import MAX_RECORD_BYTES

    retention = settings["dead_letter_retention_ms"] if t.kind == "dead-letter" else settings["retention_ms"]
    return {
        "apiVersion": STRIMZI_API, "kind": "KafkaTopic",
        "metadata": {"name": t.name, "labels": {"strimzi.io/cluster": CLUSTER, "cjrh.sh.cn/topic-kind": t.kind}},
        "spec": {"topicName": t.name, "partitions": settings["partitions"], "replicas": settings["replicas"],
                 "config": {"min.insync.replicas": settings["min_insync_replicas"], "retention.ms": retention,
                            "max.message.bytes": MAX_RECORD_BYTES, "cleanup.policy": "delete"}},
    }


def render(model: AccessModel) -> dict[str, str]:
    """The generated files: file name -> text."""
    def docs(items: list[dict]) -> str:
        return HEADER + "".join("---\n" + yaml.safe_dump(d, sort_keys=False, allow_unicode=True) for d in items)

    users = [kafka_user(p) for p in model.principals.values()]
    users.append({
        "apiVersion": STRIMZI_API, "kind": "KafkaUser",
        "metadata": {"name": ADMIN, "labels": {"strimzi.io/cluster": CLUSTER, "cjrh.sh.cn/principal-kind": "admin"}},
        "spec": {"authentication": {"type": "scram-sha-512"}},  # a super user (Kafka's authorization.superUsers)
    })
    return {
        "kafka-users.yaml": docs(users),
        "kafka-topics.yaml": docs([kafka_topic(t, model.topic_settings) for t in model.topics.values()]),
        "kustomization.yaml": HEADER + yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": ["kafka-users.yaml", "kafka-topics.yaml"]}, sort_keys=False),
    }


def owners_text(model: AccessModel) -> str:
    """The topic owners file consumers read, as JSON."""
    return json.dumps(model.owners_document(), indent=2, ensure_ascii=False) + "\n"


def access_text(model: AccessModel) -> str:
    """The flattened model the development broker applies (deploy/kafka/access.json), as JSON."""
    return json.dumps({
        "generated_by": "scripts/kafka_access.py from deploy/kafka/platforms.yaml and the services' specs",
        "principals": {name: p.kind for name, p in model.principals.items()},
        "topics": {name: t.kind for name, t in model.topics.items()},
        "acls": [[a.principal, a.resource, a.name, a.pattern, a.operation] for a in model.acls()],
    }, indent=1, ensure_ascii=False) + "\n"


@dataclass
class Generated:
    """The flattened model read back from deploy/kafka/access.json."""

    principals: dict[str, str]
    topics: dict[str, str]
    acls: list[Acl]


def load_generated(path: Path = ACCESS_PATH) -> Generated:
    """deploy/kafka/access.json (kept current by the drift test), without importing any service."""
    doc = json.loads(path.read_text())
    return Generated(doc["principals"], doc["topics"], [Acl(*row) for row in doc["acls"]])


def drift(model: AccessModel, out_dir: Path = OUT_DIR, owners_path: Path = OWNERS_PATH,
          access_path: Path = ACCESS_PATH) -> list[str]:
    """Generated files (under `out_dir`, the owners and the access file) that differ from what the model gives."""
    stale = []
    for path, text in [*((out_dir / n, t) for n, t in render(model).items()), (owners_path, owners_text(model)),
                       (access_path, access_text(model))]:
        if not path.exists() or path.read_text() != text:
            stale.append(str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path))
    return stale


# --- applying the model to a running broker (development and tests) ---------------------------------------------

async def apply(bootstrap: str, *, admin, passwords: dict[str, str], model: Generated, partitions: int,
                replication: int = 1, timeout: float = 60.0) -> None:
    """As the admin: upsert every principal's SCRAM credentials, create missing topics, create the ACLs."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError, TopicAlreadyExistsError

    from common import kafka_admin

    deadline = time.monotonic() + timeout
    while True:
        client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="access-setup", **admin.client_kwargs())
        try:
            await client.start()
            break
        except KafkaError as exc:  # the broker is still loading its metadata (the SCRAM credentials among it)
            await client.close()
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot connect to {bootstrap} as {admin.username}: {exc!r}") from exc
            await asyncio.sleep(0.3)
    try:
        await kafka_admin.upsert_scram(client, {p: pw for p, pw in passwords.items() if p != ADMIN})
        existing = set(await client.list_topics())
        missing = [NewTopic(t, num_partitions=partitions, replication_factor=replication)
                   for t in model.topics if t not in existing]
        if missing:
            try:
                await client.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
        await kafka_admin.create_acls(client, model.acls)
    finally:
        await client.close()
    try:
        await kafka_admin.wait_enforced(bootstrap, acls=model.acls, passwords=passwords, protocol=admin.protocol,
                                        cafile=admin.cafile, deadline=deadline + timeout)
    except TimeoutError as exc:
        raise RuntimeError(str(exc)) from exc


# --- Docker Compose and the development Kubernetes overlay: the same model, applied by a job as the admin --------

COMPOSE_DIR = ROOT / ".local" / "compose" / "kafka"
K8S_DEV_DIR = ROOT / ".local" / "k8s-dev"
K8S_NAMESPACE = "cjrh"
# The broker's certificate names: compose's service name, and the dev overlay's Service and StatefulSet pod (both
# `kafka`, namespace cjrh), with `localhost` for an integrator's tools behind a published port or a port-forward.
COMPOSE_BROKER_NAMES = ("kafka", "localhost")
K8S_BROKER_NAMES = ("kafka", f"kafka.{K8S_NAMESPACE}.svc", f"kafka.{K8S_NAMESPACE}.svc.cluster.local",
                    f"kafka-0.kafka.{K8S_NAMESPACE}.svc.cluster.local", "localhost")
BROKER_MOUNT = "/etc/kafka/cjrh"  # where compose and the dev overlay mount the broker's files
K8S_DEV_HOST = "cjrh.localtest.me"  # the dev overlay's Ingress host
SINGLE_NODE_TOPICS = {"partitions": 3, "replication": 1, "min_insync_replicas": 1}


def _broker_script():
    """scripts/broker.py as a module (its certificate helpers)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cjrh_broker_script", ROOT / "scripts" / "broker.py")
    broker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(broker)
    return broker


def broker_files(out: Path, *, model: AccessModel, names: tuple[str, ...],
                 extra_passwords: tuple[str, ...] = ()) -> tuple[dict[str, str], dict[str, str]]:
    """Write a single-node broker's security material into `out` (never committed) and return (files, passwords):
    the CA and the broker's keystore for `names`, its security settings (server.properties: SASL_SSL listeners
    INTERNAL, EXTERNAL and CONTROLLER, StandardAuthorizer, no access without an ACL), the admin's client settings, an
    env file per principal and the access plan (topics, SCRAM credentials, ACLs) the `kafka-access` job applies.
    Passwords already there are kept, so running it again only adds what is new."""
    import secrets

    broker = _broker_script()
    out.mkdir(parents=True, exist_ok=True)
    pw_path = out / "passwords.json"
    passwords = json.loads(pw_path.read_text()) if pw_path.exists() else {}
    for name in ["keystore", BROKER, CONTROLLER, ADMIN, *model.principals, *extra_passwords]:
        passwords.setdefault(name, secrets.token_urlsafe(24))
    if not (out / "broker.p12").exists():
        broker.certificates(out, passwords["keystore"], names=names, ips=("127.0.0.1",))
    files: dict[str, str] = {"passwords.json": json.dumps(passwords, indent=2)}
    plain = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
             f'username="{BROKER}" password="{passwords[BROKER]}" user_{BROKER}="{passwords[BROKER]}" '
             f'user_{ADMIN}="{passwords[ADMIN]}";')
    controller = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
                  f'username="{CONTROLLER}" password="{passwords[CONTROLLER]}" '
                  f'user_{CONTROLLER}="{passwords[CONTROLLER]}";')
    # Mounted as /mnt/shared/config/server.properties: the apache/kafka image starts from it and applies the
    # KAFKA_* variables of the container on top. Services and platforms log in with SCRAM (created by the
    # kafka-access job); the broker itself and the admin with PLAIN against static users, which exist before any
    # metadata does.
    files["server.properties"] = "\n".join([
        "ssl.keystore.type=PKCS12", f"ssl.keystore.location={BROKER_MOUNT}/broker.p12",
        f"ssl.keystore.password={passwords['keystore']}", f"ssl.key.password={passwords['keystore']}",
        "ssl.truststore.type=PEM", f"ssl.truststore.location={BROKER_MOUNT}/ca.pem",
        "sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN", "sasl.mechanism.inter.broker.protocol=PLAIN",
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.internal.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN",
        f"listener.name.internal.plain.sasl.jaas.config={plain}",
        "listener.name.internal.scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "listener.name.external.sasl.enabled.mechanisms=SCRAM-SHA-512",
        "listener.name.external.scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        f"listener.name.controller.plain.sasl.jaas.config={controller}",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        f"super.users=User:{ADMIN};User:{BROKER};User:{CONTROLLER}", ""])
    files["admin.properties"] = "\n".join([
        "security.protocol=SASL_SSL", "sasl.mechanism=PLAIN",
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{ADMIN}" password="{passwords[ADMIN]}";',
        "ssl.truststore.type=PEM", f"ssl.truststore.location={BROKER_MOUNT}/ca.pem", ""])
    files["admin.env"] = (f"KAFKA_SASL_MECHANISM=PLAIN\nKAFKA_SASL_USERNAME={ADMIN}\n"
                          f"KAFKA_SASL_PASSWORD={passwords[ADMIN]}\n")
    for name in model.principals:
        files[f"{name}.env"] = (f"KAFKA_SASL_MECHANISM=SCRAM-SHA-512\nKAFKA_SASL_USERNAME={name}\n"
                                f"KAFKA_SASL_PASSWORD={passwords[name]}\n")
    files["access.json"] = json.dumps(
        access_plan(model, {n: passwords[n] for n in model.principals}, topics=SINGLE_NODE_TOPICS), indent=2)
    for name, text in files.items():
        path = out / name
        path.write_text(text)
        path.chmod(0o600)
    (out / "ca.pem").chmod(0o644)
    return files, passwords


def compose_secrets(out: Path = COMPOSE_DIR, model: AccessModel | None = None) -> list[str]:
    """Write what deploy/compose.yaml mounts (never committed) and return the file names."""
    files, _ = broker_files(out, model=model or read_model(), names=COMPOSE_BROKER_NAMES)
    return sorted([*files, "ca.pem", "broker.p12"])


def k8s_dev_secrets(out: Path = K8S_DEV_DIR, model: AccessModel | None = None) -> Path:
    """Write every Secret the development overlay (deploy/k8s/overlays/dev) references into `out`/secrets.yaml, for
    `kubectl apply -f`: the broker's files, the admin's and each principal's Kafka password (a Secret named like the
    principal, key `password`, as Strimzi's User Operator makes them in production), the CA (cjrh-cluster-ca-cert,
    key ca.crt, as Strimzi names it), the JWT secret, and PostgreSQL's passwords and each service's database URL.
    Passwords already generated are kept."""
    import base64

    model = model or read_model()
    services = [p for p, v in model.principals.items() if v.kind == "service"]
    files, passwords = broker_files(out / "kafka", model=model, names=K8S_BROKER_NAMES,
                                    extra_passwords=("jwt", "postgres", *(f"db-{s}" for s in services)))
    folder = out / "kafka"

    def secret(name: str, *, string: dict[str, str] | None = None, binary: dict[str, bytes] | None = None,
               labels: dict[str, str] | None = None) -> dict:
        doc = {"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": name, "namespace": K8S_NAMESPACE,
                            "labels": {"app.kubernetes.io/part-of": "cjrh-dev-secrets", **(labels or {})}},
               "type": "Opaque"}
        if string:
            doc["stringData"] = string
        if binary:
            doc["data"] = {k: base64.b64encode(v).decode() for k, v in binary.items()}
        return doc

    broker = _broker_script()
    tls_path, key_path = out / "ingress-tls.pem", out / "ingress-tls-key.pem"
    if not tls_path.exists():  # the Ingress's certificate, by the same development CA (trust ca.pem to call it)
        cert, key = broker.leaf_certificate(folder, K8S_DEV_HOST)
        tls_path.write_bytes(cert)
        key_path.write_bytes(key)
        key_path.chmod(0o600)
    broker_keys = ["server.properties", "admin.properties", "access.json"]
    docs = [
        secret("kafka-broker", binary={**{k: files[k].encode() for k in broker_keys},
                                       "broker.p12": (folder / "broker.p12").read_bytes(),
                                       "ca.pem": (folder / "ca.pem").read_bytes()}),
        secret("cjrh-cluster-ca-cert", binary={"ca.crt": (folder / "ca.pem").read_bytes()}),
        secret("kafka-admin", string={"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": ADMIN,
                                      "KAFKA_SASL_PASSWORD": passwords[ADMIN]}),
        *(secret(name, string={"password": passwords[name]}, labels={"cjrh.sh.cn/principal-kind": p.kind})
          for name, p in model.principals.items()),
        secret("cjrh-jwt", string={"JWT_SECRET": passwords["jwt"]}),
        {**secret("cjrh-api-tls", binary={"tls.crt": tls_path.read_bytes(), "tls.key": key_path.read_bytes()}),
         "type": "kubernetes.io/tls"},
        secret("postgres-admin", string={"POSTGRES_PASSWORD": passwords["postgres"],
                                         **{f"{s.upper()}_DB_PASSWORD": passwords[f"db-{s}"] for s in services}}),
        *(secret(f"{s}-database", string={
            f"{s.upper()}_DATABASE_URL": f"postgresql://{s}:{passwords[f'db-{s}']}@postgres:5432/{s}"})
          for s in services),
    ]
    path = out / "secrets.yaml"
    path.write_text("# Generated by `make k8s-dev-secrets` (scripts/kafka_access.py) for deploy/k8s/overlays/dev.\n"
                    "# Never commit. Apply with: kubectl apply -f .local/k8s-dev/secrets.yaml\n"
                    + "".join("---\n" + yaml.safe_dump(d, sort_keys=False) for d in docs))
    path.chmod(0o600)
    return path


def access_plan(model: AccessModel, passwords: dict[str, str], *, topics: dict | None = None) -> dict:
    """What a broker needs to enforce the model: each principal's SCRAM password and every ACL; with `topics`
    (partitions, replication, min_insync_replicas), every topic too, with the retention and record limit of its
    kind (deploy/kafka/platforms.yaml), as the Strimzi topic operator would create it."""
    from common.limits import MAX_RECORD_BYTES

    plan: dict = {"scram": passwords,
                  "acls": [[a.principal, a.resource, a.name, a.pattern, a.operation] for a in model.acls()]}
    if topics:
        settings = model.topic_settings
        plan["topics"] = {t.name: {
            "partitions": topics["partitions"], "replication": topics["replication"],
            "config": {"min.insync.replicas": topics["min_insync_replicas"], "max.message.bytes": MAX_RECORD_BYTES,
                       "retention.ms": settings["dead_letter_retention_ms" if t.kind == "dead-letter"
                                                 else "retention_ms"], "cleanup.policy": "delete"}}
            for t in model.topics.values()}
    return plan


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the committed manifests drifted")
    parser.add_argument("--print", action="store_true", help="list the ACLs")
    parser.add_argument("--compose-secrets", action="store_true",
                        help=f"write what deploy/compose.yaml mounts into {COMPOSE_DIR.relative_to(ROOT)}")
    parser.add_argument("--k8s-dev-secrets", action="store_true",
                        help="write the Secrets deploy/k8s/overlays/dev references into "
                             f"{K8S_DEV_DIR.relative_to(ROOT)}/secrets.yaml")
    args = parser.parse_args(argv)
    model = read_model()
    if args.k8s_dev_secrets:
        path = k8s_dev_secrets(model=model)
        where = path.relative_to(ROOT)
        print(f"wrote {where} (never commit it); apply it with kubectl apply -f {where} before deploy/k8s/overlays/dev")
        return 0
    if args.compose_secrets:
        written = compose_secrets(model=model)
        print(f"wrote {len(written)} files to {COMPOSE_DIR.relative_to(ROOT)} (never commit them)")
        return 0
    if args.print:
        for a in model.acls():
            print(f"User:{a.principal:20} {a.operation:16} {a.resource} {a.name} ({a.pattern})")
        return 0
    if args.check:
        stale = drift(model)
        if stale:
            print("stale: " + ", ".join(stale) + " (run .venv/bin/python scripts/kafka_access.py)", file=sys.stderr)
            return 1
        print("kafka access manifests are current")
        return 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in render(model).items():
        (OUT_DIR / name).write_text(text)
    OWNERS_PATH.write_text(owners_text(model))
    ACCESS_PATH.write_text(access_text(model))
    print(f"wrote {len(model.principals) + 1} KafkaUsers and {len(model.topics)} KafkaTopics to "
          f"{OUT_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
