"""Session fixtures: one real Kafka broker and one PostgreSQL server for the whole test run."""

from __future__ import annotations

import pytest

from tests.support.harness import Broker, start_broker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Broker:
    """A real Apache Kafka broker (KAFKA_BOOTSTRAP_SERVERS, or one started from Maven Central's jars)."""
    b = start_broker(tmp_path_factory.mktemp("broker"))
    yield b
    if b.owned:
        b.stop()
