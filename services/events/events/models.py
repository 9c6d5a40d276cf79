"""Tables of the events service (its own metadata)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import JSON, Column, Field, SQLModel

from common.db import UTCDateTime, add_platform_tables, new_registry, utcnow

mapper_registry = new_registry()
metadata = mapper_registry.metadata


class Table(SQLModel, registry=mapper_registry):
    """Base of the events service's tables."""


class Organiser(Table, table=True):
    """The events service's projection of registry institutions (organisers, conflicts of interest, names)."""

    __tablename__ = "organisers"

    id: str = Field(primary_key=True, max_length=36)
    name_zh: str = Field(max_length=200)
    kind: str = Field(max_length=40)
    status: str = Field(max_length=20)
    successor_id: str | None = Field(default=None, max_length=36)
    version: int


class Activity(Table, table=True):
    """A conference, exhibition, matchmaking session, job fair, training camp or competition."""

    __tablename__ = "activities"

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True, max_length=36)
    kind: str = Field(max_length=40)
    title_zh: str = Field(max_length=300)
    title_en: str | None = Field(default=None, max_length=300)
    organiser_id: str = Field(max_length=36, index=True)
    starts_at: datetime = Field(sa_type=UTCDateTime)
    ends_at: datetime = Field(sa_type=UTCDateTime)
    capacity: int | None = None
    industries: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="draft", max_length=30, index=True)
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


outbox, processed_events = add_platform_tables(metadata)
