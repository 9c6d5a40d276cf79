"""Tables of the matching service (its own metadata)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import JSON, Column, Field, SQLModel

from common.db import UTCDateTime, add_platform_tables, new_registry, utcnow

mapper_registry = new_registry()
metadata = mapper_registry.metadata


class Table(SQLModel, registry=mapper_registry):
    """Base of the matching service's tables."""


class InstitutionView(Table, table=True):
    """Matching's projection of registry institutions, fed by registry.institution.v1 (never a synchronous call)."""

    __tablename__ = "institution_view"

    id: str = Field(primary_key=True, max_length=36)
    kind: str = Field(max_length=40, index=True)
    name_zh: str = Field(max_length=200)
    district: str = Field(max_length=30, index=True)
    industries: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    keywords: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(max_length=20)
    successor_id: str | None = Field(default=None, max_length=36)
    version: int
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


outbox, processed_events = add_platform_tables(metadata)
