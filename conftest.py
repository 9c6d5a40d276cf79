"""Session fixtures: one real Kafka broker and one PostgreSQL server for the whole test run."""

from __future__ import annotations

import asyncio
import os
import uuid

# Tests use the development trust settings (public secret, any issuer): services refuse them without DEV_MODE.
os.environ.setdefault("DEV_MODE", "true")

import pytest

from tests.support.harness import (
    Broker,
    current_group_suffix,
    drop_created_databases,
    start_broker,
)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Broker:
    """A real Apache Kafka broker (KAFKA_BOOTSTRAP_SERVERS, or one started from Maven Central's jars)."""
    b = start_broker(tmp_path_factory.mktemp("broker"))
    yield b
    if b.owned:
        b.stop()


@pytest.fixture(scope="session", autouse=True)
def test_databases_dropped_at_the_end() -> None:
    """The databases the session created (on first use, the checkout's PostgreSQL starts) are dropped at its end."""
    yield
    asyncio.run(drop_created_databases())


@pytest.fixture(autouse=True)
def isolated_consumer_groups():
    """Consumer groups of services started in a test begin at the topics' ends as the test starts."""
    token = current_group_suffix.set(f".t{uuid.uuid4().hex[:8]}")
    yield
    current_group_suffix.reset(token)
