"""Tables of the notify service (its own metadata)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import JSON, Column, Field, SQLModel

from common.db import UTCDateTime, add_platform_tables, new_registry, utcnow

mapper_registry = new_registry()
metadata = mapper_registry.metadata


class Table(SQLModel, registry=mapper_registry):
    """Base of the notify service's tables."""


class InboxMessage(Table, table=True):
    """One in-app notification for one recipient; (event id, recipient) is unique, so an event lands once."""

    __tablename__ = "inbox_messages"
    __table_args__ = (UniqueConstraint("event_id", "recipient"),)

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True, max_length=36)
    recipient: str = Field(max_length=120, index=True, description="a user id, or 'role:office_admin'")
    category: str = Field(max_length=60)
    title: str = Field(max_length=300)
    body: str = Field(max_length=4000)
    event_id: str = Field(max_length=200)
    event_type: str = Field(max_length=300)
    subject: str | None = Field(default=None, max_length=200)
    data: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    read_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    archived_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


outbox, processed_events = add_platform_tables(metadata)
