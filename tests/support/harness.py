"""Test harness: a real broker and PostgreSQL, services started in-process, Kafka readers, polling helpers."""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from common.auth import mint_token
from common.config import LOCAL_PG_PORT, ServiceSettings
from common.kafka import PLAINTEXT, KafkaSecurity, LocalCredentials
from common.service import Runtime, ensure_topics, topics_for

ROOT = Path(__file__).resolve().parents[2]
# Tests run with the development trust settings (public secret, no issuer); services refuse them without DEV_MODE.
os.environ.setdefault("DEV_MODE", "true")
BROKER = ROOT / "scripts" / "broker.py"
SECURITY_DIR = Path(os.environ.get("KAFKA_SECURITY_DIR", ROOT / ".local" / "kafka" / "security"))
ADMIN_PRINCIPAL = "kafka-admin"
PG = ROOT / "scripts" / "pg.py"
# TEST_PG_URL points the tests at any PostgreSQL; by default they use the checkout's own server (scripts/pg.py).
ADMIN_PG_URL = os.environ.get(
    "TEST_PG_URL", f"postgresql://postgres:postgres@127.0.0.1:{os.environ.get('PG_PORT', LOCAL_PG_PORT)}/postgres")
CREATED_DATABASES: list[str] = []
SECRET = ServiceSettings().jwt_secret
AUDIENCE = ServiceSettings().jwt_audience


def kafka_access():
    """scripts/kafka_access.py (who may do what on Kafka) as a module."""
    import importlib.util

    if "cjrh_kafka_access" not in sys.modules:
        spec = importlib.util.spec_from_file_location("cjrh_kafka_access", ROOT / "scripts" / "kafka_access.py")
        sys.modules[spec.name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules["cjrh_kafka_access"]


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (and the one after it, for the broker's controller listener)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


@dataclass
class Broker:
    """A Kafka broker for the test session; `owned` when this session started it (and may stop/start it).

    A broker this session starts is secured (SASL_SSL, SCRAM-SHA-512, ACLs): `security(principal)` says how a service
    or platform connects to it; test tooling (reading any topic, sending poison) uses the admin principal."""

    bootstrap: str
    owned: bool
    data: Path | None = None
    port: int | None = None
    credentials: LocalCredentials | None = None
    tooling: KafkaSecurity = PLAINTEXT

    def __post_init__(self) -> None:
        _BROKERS[self.bootstrap] = self

    def security(self, principal: str) -> KafkaSecurity:
        """How `principal` (a service, a platform, the admin) connects to this broker."""
        if self.credentials is None:
            return self.tooling  # an outside broker: every client connects as KAFKA_SASL_USERNAME says
        return self.credentials.security(principal)

    @property
    def admin(self) -> KafkaSecurity:
        """The super user, for test tooling only."""
        return self.tooling

    def stop(self) -> None:
        """Stop the broker (owned brokers only)."""
        assert self.owned, "cannot stop a broker this test session did not start"
        subprocess.run([sys.executable, str(BROKER), "stop", "--data", str(self.data)], check=True,
                       capture_output=True)

    def ensure_up(self) -> None:
        """Start the broker again if a test left it stopped (owned brokers only)."""
        if self.owned and subprocess.run(
            [sys.executable, str(BROKER), "status", "--port", str(self.port)], capture_output=True,
        ).returncode != 0:
            self.start()

    def start(self) -> None:
        """Start the broker again on the same port and data (owned brokers only)."""
        assert self.owned
        subprocess.run([sys.executable, str(BROKER), "start", "--data", str(self.data), "--port", str(self.port)],
                       check=True)


# Test tooling (read_topic, produce, processes, benchmarks) takes a bootstrap string; the broker behind it says how to
# authenticate.
_BROKERS: dict[str, Broker] = {}


def tooling_security(bootstrap: str) -> KafkaSecurity:
    """How test tooling connects to `bootstrap`: the admin principal of a broker this session started."""
    broker = _BROKERS.get(bootstrap)
    return broker.admin if broker else ServiceSettings().kafka_security


def principal_security(bootstrap: str, principal: str) -> KafkaSecurity:
    """How `principal` (a service or a platform) connects to `bootstrap`."""
    broker = _BROKERS.get(bootstrap)
    return broker.security(principal) if broker else ServiceSettings().kafka_security


def start_broker(tmp: Path) -> Broker:
    """Use KAFKA_BOOTSTRAP_SERVERS when set (with the KAFKA_SECURITY_PROTOCOL/KAFKA_SASL_* settings), else start a
    fresh secured local broker on a free port."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return Broker(os.environ["KAFKA_BOOTSTRAP_SERVERS"], owned=False, tooling=ServiceSettings().kafka_security)
    port = free_port()
    data = tmp / "kafka"
    subprocess.run([sys.executable, str(BROKER), "start", "--data", str(data), "--port", str(port)], check=True)
    creds = LocalCredentials.load(SECURITY_DIR / "credentials.json")
    return Broker(f"127.0.0.1:{port}", owned=True, data=data, port=port, credentials=creds,
                  tooling=creds.security(ADMIN_PRINCIPAL))


@functools.cache
def ensure_postgres() -> None:
    """Start the checkout's PostgreSQL unless TEST_PG_URL names another server (once per process)."""
    if not os.environ.get("TEST_PG_URL"):
        subprocess.run([sys.executable, str(PG), "start"], check=True)


async def fresh_database(label: str) -> str:
    """Create an empty PostgreSQL database for one service in one test; returns its URL (dropped after the session)."""
    name = f"t_{label}_{uuid.uuid4().hex[:10]}"
    ensure_postgres()
    conn = await asyncpg.connect(ADMIN_PG_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    CREATED_DATABASES.append(name)
    return ADMIN_PG_URL.rsplit("/", 1)[0] + f"/{name}"


async def drop_created_databases() -> None:
    """Drop every database this session created, so repeated runs do not fill the disk."""
    if not CREATED_DATABASES:
        return
    conn = await asyncpg.connect(ADMIN_PG_URL)
    try:
        while CREATED_DATABASES:
            await conn.execute(f'DROP DATABASE IF EXISTS "{CREATED_DATABASES.pop()}" WITH (FORCE)')
    finally:
        await conn.close()


def token(*roles: str, institution: str | None = None, sub: str | None = None, **kw: Any) -> str:
    """A development bearer token for the given roles (and institution)."""
    return mint_token(secret=SECRET, sub=sub or f"user-{uuid.uuid4().hex[:8]}", roles=list(roles),
                      institution_id=institution, audience=AUDIENCE, **kw)


def auth(*roles: str, institution: str | None = None, sub: str | None = None) -> dict[str, str]:
    """An Authorization header for the given roles."""
    return {"Authorization": f"Bearer {token(*roles, institution=institution, sub=sub)}"}


@dataclass
class Service:
    """A service running in-process: its app, live runtime and an HTTP client bound to it."""

    app: FastAPI
    runtime: Runtime
    http: httpx.AsyncClient

    @property
    def consumers(self):
        """The service's running consumers."""
        return self.runtime.consumers

    async def idle(self, timeout: float = 30.0) -> None:
        """Wait until the outbox is empty and every consumer has caught up."""
        deadline = time.monotonic() + timeout
        while await self.runtime.relay.publish_pending() and time.monotonic() < deadline:
            pass
        for c in self.consumers:
            await c.wait_idle(max(1.0, deadline - time.monotonic()))


@asynccontextmanager
async def run_service(
    create_app: Callable[[Any], FastAPI], settings_cls: type[ServiceSettings], *, broker: Broker, db_url: str,
    **overrides: Any,
) -> AsyncIterator[Service]:
    """Start a service in-process against the real broker and database; stop it cleanly afterwards."""
    defaults = {"log_json": False, "outbox_sweep_seconds": 0.2, "consumer_backoff_seconds": 0.05,
                "write_rate_per_second": 0,  # storms and benchmarks write fast with one token; the limiter has its test
                "failed_auth_per_second": 0,  # authorisation matrices send many refused tokens; so has this limiter
                # A service started outside a test (a package-wide fixture) gets groups of its own too: without a
                # suffix it read every topic from the beginning, other tests' records included.
                "consumer_group_suffix": current_group_suffix.get() or f".f{uuid.uuid4().hex[:8]}"}
    principal = overrides.pop("principal", None) or settings_cls.model_fields["service_name"].default
    settings = settings_cls(
        database_url=db_url, kafka_bootstrap_servers=broker.bootstrap,
        **{**defaults, **kafka_settings(broker.security(principal)), **overrides},
    )
    app = create_app(settings)
    if settings.consumer_group_suffix:
        await start_groups_at_end(app, settings)
    async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60):
        runtime: Runtime = app.state.runtime
        await asyncio.wait_for(runtime.producer_ready.wait(), timeout=60)
        for c in runtime.consumers if settings.run_workers else []:
            await wait_until(lambda c=c: c._consumer is not None and bool(c._consumer.assignment()), timeout=60,
                             what=f"consumer {c.group_id} assigned")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{settings.service_name}") as http:
            yield Service(app=app, runtime=runtime, http=http)


def kafka_settings(security: KafkaSecurity) -> dict[str, Any]:
    """Settings fields that make a service connect as `security` says."""
    return {"kafka_security_protocol": security.protocol, "kafka_sasl_mechanism": security.mechanism,
            "kafka_sasl_username": security.username, "kafka_sasl_password": security.password,
            "kafka_ssl_cafile": security.cafile}


# Each test's consumer groups get their own suffix (set by an autouse fixture), so a test's services see the events
# produced during that test, not the backlog other tests left on the shared topics.
current_group_suffix: ContextVar[str] = ContextVar("current_group_suffix", default="")


async def start_groups_at_end(app: FastAPI, settings: ServiceSettings) -> None:
    """Create the service's topics and, for consumer groups new to this test, commit the current end offsets."""
    spec = app.state.spec
    security = settings.kafka_security  # the service's own principal: its groups are `<service>.*`
    await ensure_topics(settings.kafka_bootstrap_servers, topics_for(spec), partitions=settings.topic_partitions,
                        security=tooling_security(settings.kafka_bootstrap_servers))
    for c in spec.consumers:
        group = f"{settings.service_name}.{c.name}{settings.consumer_group_suffix}"
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group,
                                    enable_auto_commit=False, **security.client_kwargs())
        await consumer.start()
        try:
            tps = []
            for sub in c.subscriptions:
                tps += await partitions_of(consumer, sub.topic)
            if not tps:
                raise RuntimeError(f"the broker does not know the topics of {group} yet")
            consumer.assign(tps)
            if any([await consumer.committed(tp) is not None for tp in tps]):
                continue  # the group already ran in this test (a restart): it resumes where it stopped
            ends = await consumer.end_offsets(tps)
            await consumer.commit({tp: off for tp, off in ends.items()})
        finally:
            await consumer.stop()


async def wait_until(
    check: Callable[[], Any | Awaitable[Any]], *, timeout: float = 20.0, interval: float = 0.05, what: str = "",
) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(interval)


async def partitions_of(consumer: AIOKafkaConsumer, topic: str, *, timeout: float = 15.0) -> list[TopicPartition]:
    """Every partition of `topic`, refreshing the consumer's metadata until it knows the topic: a topic created a
    moment ago may not be in the broker's metadata yet (seen in CI on a busy machine)."""
    deadline = time.monotonic() + timeout
    parts = consumer.partitions_for_topic(topic)
    while not parts:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic)
        if parts or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    return [TopicPartition(topic, p) for p in sorted(parts or ())]


async def read_topic(
    bootstrap: str, topic: str, *, until: Callable[[list], bool], timeout: float = 20.0,
    security: KafkaSecurity | None = None,
) -> list:
    """Read a topic from the beginning (no consumer group) until `until(records)` holds; returns the records.

    As the admin unless `security` names another principal."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                **(security or tooling_security(bootstrap)).client_kwargs())
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list = []
        deadline = time.monotonic() + timeout
        while not until(records):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out reading {topic}: {len(records)} records seen")
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                records.extend(msgs)
        return records
    finally:
        await consumer.stop()


async def produce(
    bootstrap: str, topic: str, values: list[bytes | None], *, key: bytes | None = b"k", partition: int | None = None,
    headers: list[tuple[str, bytes]] | None = None, max_request_size: int = 1048576,
    security: KafkaSecurity | None = None,
) -> None:
    """Send raw bytes to a topic (for duplicates and poison messages), to one partition if given, as the admin unless
    `security` says."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                                max_request_size=max_request_size,
                                **(security or tooling_security(bootstrap)).client_kwargs())
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, value=v, key=key, partition=partition, headers=headers)
    finally:
        await producer.stop()
