"""Tables of the registry service (its own metadata, so no other service's tables can clash with them)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import JSON, Column, Field, SQLModel

from common.db import UTCDateTime, add_platform_tables, new_registry, utcnow

mapper_registry = new_registry()
metadata = mapper_registry.metadata


class Table(SQLModel, registry=mapper_registry):
    """Base of the registry's tables."""


class Institution(Table, table=True):
    """A participating institution: school, enterprise, association, institute, park or agency."""

    __tablename__ = "institutions"

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True, max_length=36)
    kind: str = Field(max_length=40, index=True)
    name_zh: str = Field(max_length=200, index=True)
    name_en: str | None = Field(default=None, max_length=300)
    uscc: str | None = Field(default=None, max_length=18, unique=True)
    school_code: str | None = Field(default=None, max_length=10, unique=True)
    district: str = Field(max_length=30, index=True)
    address: str | None = Field(default=None, max_length=300)
    industries: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    keywords: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    website: str | None = Field(default=None, max_length=300)
    contact_name: str | None = Field(default=None, max_length=100)
    contact_phone: str | None = Field(default=None, max_length=40)
    contact_email: str | None = Field(default=None, max_length=200)
    status: str = Field(default="active", max_length=20, index=True)
    successor_id: str | None = Field(default=None, max_length=36)
    version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


outbox, processed_events = add_platform_tables(metadata)
