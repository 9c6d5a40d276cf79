"""The broker the tests start is secured like every broker we ship: SASL_SSL with SCRAM-SHA-512, and ACLs generated
from the services' code and deploy/kafka/platforms.yaml (scripts/kafka_access.py). Each principal can do what its
role needs and nothing more; a wrong password, an untrusted certificate or a plaintext client gets nowhere."""

from __future__ import annotations

import re
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    MessageSizeTooLargeError,
    TopicAuthorizationFailedError,
)

from common.kafka import PLAINTEXT, KafkaSecurity
from tests.support.harness import Broker, kafka_access, partitions_of

pytestmark = pytest.mark.integration

MODEL = kafka_access().read_model()
SERVICES = [p for p in MODEL.principals.values() if p.kind == "service"]


@pytest.fixture
def secured(broker: Broker) -> Broker:
    if broker.credentials is None:
        pytest.skip("an outside broker (KAFKA_BOOTSTRAP_SERVERS): its security is not this session's to check")
    return broker


def _broker_record_limit(broker: Broker) -> int:
    found = re.search(r"^message\.max\.bytes=(\d+)$", (broker.data / "server.properties").read_text(), re.M)
    return int(found.group(1)) if found else 1_048_588


async def _send(broker: Broker, security: KafkaSecurity, topic: str) -> None:
    """Prove `security` may write `topic` without leaving a record on the shared topics (other tests read them from
    the beginning): the broker authorises a produce request before it checks the size, so a record just over the
    broker's limit is refused as too large when writing is allowed, and as unauthorised when it is not."""
    limit = _broker_record_limit(broker)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True, acks="all",
                                request_timeout_ms=20000, max_request_size=2 * limit + 1_048_576,
                                **security.client_kwargs())
    await producer.start()
    try:
        with pytest.raises(MessageSizeTooLargeError):  # the broker's verdict: the client allows twice the size
            await producer.send_and_wait(topic, value=b"p" * (limit + 1024), key=b"probe")
    finally:
        await producer.stop()


async def _read(broker: Broker, security: KafkaSecurity, topic: str, *, group: str) -> None:
    """Join `group`, read `topic` from the start for a moment and commit: what a consumer of the topic does."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", **security.client_kwargs())
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=500)
        await consumer.commit()
    finally:
        await consumer.stop()


async def _connects(broker: Broker, security: KafkaSecurity) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=5000,
                                **security.client_kwargs())
    try:
        await producer.start()
    finally:
        await producer.stop()


async def test_a_municipal_platform_cannot_publish_registry_institution_events(secured):
    platform = secured.security("market-supervision")
    await _send(secured, platform, "municipal.enterprise.v1")  # its own inbound topic: allowed
    with pytest.raises(TopicAuthorizationFailedError):
        await _send(secured, platform, "registry.institution.v1")


async def test_a_municipal_platform_reads_public_topics_but_not_contact_details(secured):
    platform = secured.security("market-supervision")
    await _read(secured, platform, "registry.institution.v1", group=f"market-supervision.probe-{uuid.uuid4().hex[:6]}")
    with pytest.raises(TopicAuthorizationFailedError):
        await _read(secured, platform, "registry.contact.v1", group=f"market-supervision.probe-{uuid.uuid4().hex[:6]}")


async def test_a_platform_may_not_use_a_consumer_group_of_the_platform(secured):
    """A platform joining `registry.municipal` would steal the registry's partitions."""
    with pytest.raises(GroupAuthorizationFailedError):
        await _read(secured, secured.security("market-supervision"), "registry.institution.v1",
                    group="registry.municipal")


async def test_a_wrong_password_is_refused(secured):
    good = secured.security("registry")
    await _connects(secured, good)
    with pytest.raises(KafkaConnectionError):
        await _connects(secured, KafkaSecurity(username="registry", password=good.password + "x", cafile=good.cafile))


async def test_an_unknown_principal_is_refused(secured):
    good = secured.security("registry")
    with pytest.raises(KafkaConnectionError):
        await _connects(secured, KafkaSecurity(username="intruder", password=good.password, cafile=good.cafile))


async def test_a_client_that_does_not_trust_the_brokers_certificate_is_refused(secured):
    """Without the development CA (KAFKA_SSL_CAFILE) the broker's certificate does not verify: no connection."""
    good = secured.security("registry")
    with pytest.raises(KafkaConnectionError):
        await _connects(secured, KafkaSecurity(username="registry", password=good.password, cafile=None))


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
async def test_a_client_without_tls_or_without_sasl_is_refused(secured, protocol):
    good = secured.security("registry")
    security = PLAINTEXT if protocol == "PLAINTEXT" else KafkaSecurity(protocol="SSL", cafile=good.cafile)
    with pytest.raises(KafkaConnectionError):
        await _connects(secured, security)


@pytest.mark.parametrize("svc", SERVICES, ids=lambda p: p.name)
async def test_every_service_publishes_and_consumes_with_its_own_credentials(secured, svc):
    """What the service's code publishes it may write (and its dead-letter topics); what it consumes it may read in its
    own groups; a topic of another service it may not write."""
    security = secured.security(svc.name)
    for topic in svc.writes:
        await _send(secured, security, topic)
    for topic in svc.reads:
        await _read(secured, security, topic, group=f"{svc.name}.probe-{uuid.uuid4().hex[:6]}")
    foreign = next(t for t in MODEL.topics if t not in svc.writes and not t.endswith(".dlq"))
    with pytest.raises(TopicAuthorizationFailedError):
        await _send(secured, security, foreign)


async def test_a_service_cannot_read_a_topic_it_does_not_consume(secured):
    matching = secured.security("matching")
    with pytest.raises(TopicAuthorizationFailedError):
        await _read(secured, matching, "registry.contact.v1", group=f"matching.probe-{uuid.uuid4().hex[:6]}")


async def test_services_cannot_create_topics(secured):
    """Topics come from the topics job (the admin) or Strimzi's KafkaTopic resources, never from a service."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=secured.bootstrap, **secured.security("registry").client_kwargs())
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(f"registry.rogue-{uuid.uuid4().hex[:6]}.v1", 1, 1)])
        assert {code for _, code, *_ in response.topic_errors} == {29}  # TOPIC_AUTHORIZATION_FAILED
    finally:
        await admin.close()


async def test_the_admin_sees_every_topic_the_model_declares(secured):
    consumer = AIOKafkaConsumer(bootstrap_servers=secured.bootstrap, group_id=None, **secured.admin.client_kwargs())
    await consumer.start()
    try:
        for topic in MODEL.topics:
            assert await partitions_of(consumer, topic, timeout=5), f"{topic} was not created at broker start"
    finally:
        await consumer.stop()


async def test_the_compose_access_job_creates_credentials_and_acls_from_an_access_plan(secured, tmp_path):
    """`ops.py kafka-access` (compose's job) applies what `make compose-secrets` writes, here to the test broker."""
    import asyncio
    import json
    import os
    import secrets
    import subprocess
    import sys

    from tests.support.harness import ROOT

    name, password = f"probe-{uuid.uuid4().hex[:6]}", secrets.token_urlsafe(16)
    topic = "registry.base.v1"
    plan = tmp_path / "access.json"
    plan.write_text(json.dumps({"scram": {name: password}, "acls": [
        [name, "topic", topic, "literal", "Write"], [name, "topic", topic, "literal", "Describe"],
        [name, "cluster", "kafka-cluster", "literal", "IdempotentWrite"]]}))
    env = {**os.environ, **secured.admin.as_env(), "KAFKA_BOOTSTRAP_SERVERS": secured.bootstrap}
    done = await asyncio.to_thread(subprocess.run, [sys.executable, str(ROOT / "deploy/docker/ops.py"),
                                                     "kafka-access", str(plan)], env=env, capture_output=True,
                                   text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    probe = KafkaSecurity(username=name, password=password, cafile=secured.admin.cafile)
    await _send(secured, probe, topic)
    with pytest.raises(TopicAuthorizationFailedError):
        await _send(secured, probe, "registry.institution.v1")
