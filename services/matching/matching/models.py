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
    uscc: str | None = Field(default=None, max_length=18, index=True)
    district: str = Field(max_length=30, index=True)
    industries: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    keywords: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    tokens: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(max_length=20)
    successor_id: str | None = Field(default=None, max_length=36)
    certified: bool = False
    version: int
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CertificationView(Table, table=True):
    """Matching's projection of certification records (registry.certification.v1): who is certified."""

    __tablename__ = "certification_view"

    id: str = Field(primary_key=True, max_length=36)
    institution_id: str = Field(max_length=36, index=True)
    status: str = Field(max_length=40)
    is_certified: bool = False
    year: int | None = None
    version: int
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Opportunity(Table, table=True):
    """A demand (opportunity) or an offer posted by an institution, or imported from the city's platform."""

    __tablename__ = "opportunity"

    id: str = Field(primary_key=True, max_length=36)
    direction: str = Field(max_length=10, index=True)
    kind: str = Field(max_length=40, index=True)
    title_zh: str = Field(max_length=200)
    description_zh: str = Field(default="", max_length=5000)
    skills: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    industries: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    tokens: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    district: str | None = Field(default=None, max_length=30, index=True)
    capacity: int = 1
    budget_cny: int | None = None
    deadline: datetime | None = Field(default=None, sa_type=UTCDateTime)
    institution_id: str | None = Field(default=None, max_length=36, index=True)
    employer_name: str | None = Field(default=None, max_length=200)
    source: str = Field(default="platform", max_length=20)
    external_id: str | None = Field(default=None, max_length=100, unique=True)
    contact_name: str | None = Field(default=None, max_length=100)
    contact_phone: str | None = Field(default=None, max_length=40)
    contact_email: str | None = Field(default=None, max_length=200)
    status: str = Field(default="draft", max_length=20, index=True)
    version: int = 1
    created_by: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    opened_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Match(Table, table=True):
    """An expression of interest between two institutions about an opportunity, tracked to its outcomes."""

    __tablename__ = "match"

    id: str = Field(primary_key=True, max_length=36)
    opportunity_id: str = Field(max_length=36, index=True)
    offer_id: str | None = Field(default=None, max_length=36)
    from_institution_id: str = Field(max_length=36, index=True)
    to_institution_id: str = Field(max_length=36, index=True)
    status: str = Field(default="proposed", max_length=20, index=True)
    seats: int = 1
    message: str = Field(default="", max_length=2000)
    industries: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    district: str | None = Field(default=None, max_length=30)
    outcomes: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # the progress log (长效跟踪): every step and note, who and when, readable by both sides
    progress: list[dict] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]"))
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    proposed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    version: int = 1
    created_by: str = Field(default="", max_length=200)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PlacementRound(Table, table=True):
    """A placement round: its input (positions, participants, teams, quotas), published seed and result."""

    __tablename__ = "placement_round"

    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=40)
    seed: int
    status: str = Field(default="draft", max_length=20)
    problem: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    result: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    version: int = 1
    created_by: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


outbox, processed_events = add_platform_tables(metadata)
