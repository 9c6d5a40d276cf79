"""Tables of the registry service (its own metadata, so no other service's tables can clash with them)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import JSON, Column, Field, SQLModel

from common.db import UTCDateTime, add_platform_tables, new_registry, utcnow

mapper_registry = new_registry()
metadata = mapper_registry.metadata

# JSONB, so that containment (@>) can use GIN indexes for industry and name search.
JSONList = JSONB()
# Search grams: a text[], whose element statistics let the planner tell rare grams (use the GIN index) from common
# ones (walk the name index in order and stop early).
GramList = ARRAY(Text())
# New entries go through a 256 kB pending list rather than straight into the posting trees (migration 0002).
GIN_STORAGE = {"fastupdate": "on", "gin_pending_list_limit": 256}


def new_id() -> str:
    """A fresh random identifier."""
    return str(uuid.uuid4())


class Table(SQLModel, registry=mapper_registry):
    """Base of the registry's tables."""


class Institution(Table, table=True):
    """A participating institution: school, enterprise, association, institute, park or agency."""

    __tablename__ = "institutions"
    __table_args__ = (
        Index("ix_institutions_name_zh_id", "name_zh", "id"),
        # Substring search (name grams) and industry filters (JSONB containment). Declared here as migrations 0001 and
        # 0002 build them, so autogenerate sees them as the models' own and never proposes to drop them.
        Index("ix_institutions_name_grams", "name_grams", postgresql_using="gin", postgresql_with=GIN_STORAGE),
        Index("ix_institutions_industries", "industries", postgresql_using="gin",
              postgresql_ops={"industries": "jsonb_path_ops"}, postgresql_with=GIN_STORAGE),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    kind: str = Field(max_length=40, index=True)
    name_zh: str = Field(max_length=200)
    name_en: str | None = Field(default=None, max_length=300)
    uscc: str | None = Field(default=None, max_length=18, unique=True)
    school_code: str | None = Field(default=None, max_length=10, unique=True)
    district: str = Field(max_length=30, index=True)
    address: str | None = Field(default=None, max_length=300)
    industries: list[str] = Field(default_factory=list, sa_column=Column(JSONList, nullable=False))
    keywords: list[str] = Field(default_factory=list, sa_column=Column(JSONList, nullable=False))
    website: str | None = Field(default=None, max_length=300)
    contact_name: str | None = Field(default=None, max_length=100)
    contact_phone: str | None = Field(default=None, max_length=40)
    contact_email: str | None = Field(default=None, max_length=200)
    status: str = Field(default="active", max_length=20, index=True)
    successor_id: str | None = Field(default=None, max_length=36)
    certification_status: str | None = Field(default=None, max_length=20, index=True)
    name_grams: list[str] = Field(default_factory=list, sa_column=Column(GramList, nullable=False))
    version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class InstitutionRevision(Table, table=True):
    """One version of an institution: who changed what, when, and the full state after the change (for as-of reads)."""

    __tablename__ = "institution_revisions"
    __table_args__ = (UniqueConstraint("institution_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    institution_id: str = Field(max_length=36)  # indexed as the first column of the (institution_id, version) key
    version: int
    change: str = Field(max_length=40)
    actor: str = Field(max_length=200)
    changed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    changes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    snapshot: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class CertificationBatch(Table, table=True):
    """A yearly certification batch the office opens (e.g. "2026 第一批")."""

    __tablename__ = "certification_batches"
    __table_args__ = (UniqueConstraint("name"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name: str = Field(max_length=100)
    year: int = Field(index=True)
    objection_window_days: int = Field(default=5)
    status: str = Field(default="open", max_length=20)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Certification(Table, table=True):
    """An enterprise's certified-enterprise file: one per enterprise, moved through the lifecycle in domain.py."""

    __tablename__ = "certifications"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    institution_id: str = Field(max_length=36, unique=True)
    enterprise_name: str = Field(max_length=200)
    batch_id: str | None = Field(default=None, max_length=36, index=True)
    status: str = Field(default="pooled", max_length=20, index=True)
    evaluation_result: str | None = Field(default=None, max_length=20)
    certified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    announced_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    objection_deadline: datetime | None = Field(default=None, sa_type=UTCDateTime)
    history: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TrainingBase(Table, table=True):
    """A base (employment / teaching / practice) hosted by one or more institutions."""

    __tablename__ = "bases"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name_zh: str = Field(max_length=200)
    base_type: str = Field(max_length=20, index=True)
    category: str = Field(max_length=40, index=True)
    host_institution_ids: list[str] = Field(default_factory=list, sa_column=Column(JSONList, nullable=False))
    # co-hosts named by someone who does not act for them, until their administrator (or the office) confirms
    pending_host_ids: list[str] = Field(default_factory=list, sa_column=Column(JSONList, nullable=False,
                                                                              server_default="[]"))
    capacity: int = Field(default=0)
    industries: list[str] = Field(default_factory=list, sa_column=Column(JSONList, nullable=False))
    district: str | None = Field(default=None, max_length=30)
    address: str | None = Field(default=None, max_length=300)
    status: str = Field(default="active", max_length=20)
    version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Alliance(Table, table=True):
    """An alliance, community, vocational education group or consortium with a lead institution."""

    __tablename__ = "alliances"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name_zh: str = Field(max_length=200)
    kind: str = Field(max_length=40)
    lead_institution_id: str = Field(max_length=36, index=True)
    industries: list[str] = Field(default_factory=list, sa_column=Column(JSONList, nullable=False))
    members: list[dict[str, str]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # pending joins: {institution_id, role, initiated_by: "institution" | "lead", requested_by, requested_at}; an
    # institution's request waits for the lead, the lead's invitation for the institution
    join_requests: list[dict[str, str]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False,
                                                                                      server_default="[]"))
    status: str = Field(default="active", max_length=20)
    version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Mentor(Table, table=True):
    """A person in the faculty pool; listed publicly only once their consent is recorded."""

    __tablename__ = "mentors"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    institution_id: str = Field(max_length=36, index=True)
    title: str = Field(max_length=40)
    name: str = Field(max_length=100)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=200)
    id_number: str | None = Field(default=None, max_length=30)
    industries: list[str] = Field(default_factory=list, sa_column=Column(JSONList, nullable=False))
    expertise: str | None = Field(default=None, max_length=500)
    status: str = Field(default="pending_consent", max_length=20, index=True)
    consent_given_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    consent_method: str | None = Field(default=None, max_length=100)
    consent_recorded_by: str | None = Field(default=None, max_length=200)
    version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class UsccChangeRequest(Table, table=True):
    """An institution administrator's request to change its registered USCC, decided by the office."""

    __tablename__ = "uscc_change_requests"
    __table_args__ = (Index("ix_uscc_change_requests_institution_status", "institution_id", "status"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    institution_id: str = Field(max_length=36)
    current_uscc: str | None = Field(default=None, max_length=18)
    requested_uscc: str = Field(max_length=18)
    reason: str | None = Field(default=None, max_length=500)
    status: str = Field(default="pending", max_length=20)  # pending | approved | declined
    requested_by: str = Field(max_length=200)
    requested_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    decided_by: str | None = Field(default=None, max_length=200)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decision_note: str | None = Field(default=None, max_length=500)


outbox, processed_events = add_platform_tables(metadata)
