"""A scratch 'service' for testing libs/common alone: one table, the platform tables, a topic of its own."""

from __future__ import annotations

import uuid

from pydantic import BaseModel
from sqlalchemy import Column, Integer, MetaData, String, Table

from common.db import NAMING_CONVENTION, add_platform_tables, create_engine, session_factory
from common.events import EventContract
from common.kafka import KafkaSecurity
from common.outbox import WAKE, EventStager, OutboxRelay, producer_for

metadata = MetaData(naming_convention=NAMING_CONVENTION)
widgets = Table(
    "widgets", metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("applied", Integer, nullable=False, default=1),
)
outbox, processed = add_platform_tables(metadata)


class WidgetPayload(BaseModel):
    """Payload of the scratch events."""

    id: str
    name: str


def contract(topic: str, name: str = "scratch.widget.made") -> EventContract:
    """A contract on a per-test topic."""
    return EventContract(topic, name, WidgetPayload)


class Scratch:
    """Engine, sessions, stager and relay for one scratch database."""

    def __init__(self, db_url: str, bootstrap: str, *, sweep_seconds: float = 0.2,
                 security: KafkaSecurity | None = None) -> None:
        from tests.support.harness import tooling_security  # the scratch topics are per test: no principal owns them

        self.engine = create_engine(db_url)
        self.security = security or tooling_security(bootstrap)
        self.producer = producer_for(bootstrap, client_id="scratch", security=self.security)
        self.relay = OutboxRelay(engine=self.engine, table=outbox, producer=self.producer, service="scratch",
                                 sweep_seconds=sweep_seconds)
        self.sessions = session_factory(self.engine, **{WAKE: self.relay.wake})
        self.stager = EventStager(table=outbox, source="//tests/scratch", type_prefix="cn.gov.sh.cjrh")

    async def create(self) -> None:
        """Create the tables."""
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def close(self) -> None:
        """Release the producer and the engine."""
        await self.producer.stop()
        await self.engine.dispose()


def new_topic() -> str:
    """A topic name no other test uses."""
    return f"scratch.{uuid.uuid4().hex[:8]}.v1"
