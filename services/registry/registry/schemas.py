"""Request and response models of the registry API (one schema family per entity)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.contact import EmailAddress, PhoneNumber
from common.identifiers import canonical_code
from registry.domain import (
    SCHOOL_KINDS,
    AllianceKind,
    BaseCategory,
    BaseType,
    CertAction,
    District,
    Industry,
    InstitutionKind,
    InstitutionStatus,
    MemberRole,
    MentorTitle,
    school_code_problem,
    uscc_problem,
)

T = TypeVar("T")


def _clean_uscc(v: str | None) -> str | None:
    if v is None or not v.strip():
        return None
    v = canonical_code(v)
    if (why := uscc_problem(v)) is not None:
        raise ValueError(why)
    return v


def _clean_school_code(v: str | None) -> str | None:
    if v is None or not v.strip():
        return None
    v = canonical_code(v)
    if (why := school_code_problem(v)) is not None:
        raise ValueError(why)
    return v


class InstitutionBase(BaseModel):
    """Fields an institution's editor supplies."""

    kind: InstitutionKind
    name_zh: str = Field(min_length=2, max_length=200, description="Chinese name, e.g. 上海电机学院")
    name_en: str | None = Field(default=None, max_length=300)
    uscc: str | None = Field(default=None, description="Unified social credit code (GB 32100-2015)")
    school_code: str | None = Field(default=None, description="10-digit school identification code")
    district: District
    address: str | None = Field(default=None, max_length=300)
    industries: list[Industry] = Field(default_factory=list, max_length=20)
    keywords: list[str] = Field(default_factory=list, max_length=50)
    website: str | None = Field(default=None, max_length=300)
    contact_name: str | None = Field(default=None, max_length=100)
    contact_phone: PhoneNumber | None = Field(default=None, max_length=40)
    contact_email: EmailAddress | None = Field(default=None, max_length=200)


class InstitutionCreate(InstitutionBase):
    """A new institution; identifiers are checked (USCC check character, school-code format)."""

    @field_validator("uscc")
    @classmethod
    def _uscc(cls, v: str | None) -> str | None:
        return _clean_uscc(v)

    @field_validator("school_code")
    @classmethod
    def _school(cls, v: str | None) -> str | None:
        return _clean_school_code(v)

    @model_validator(mode="after")
    def _identifier_for_kind(self):
        if self.kind in SCHOOL_KINDS and not (self.school_code or self.uscc):
            raise ValueError("a school needs a school_code (or a USCC)")
        if self.kind not in SCHOOL_KINDS and self.school_code:
            raise ValueError(f"a {self.kind.value} has no school_code")
        if self.kind == InstitutionKind.ENTERPRISE and not self.uscc:
            raise ValueError("an enterprise needs its USCC")
        return self


class InstitutionUpdate(BaseModel):
    """A partial update (JSON merge-patch style): only the fields sent change. Kind, status and merges have their
    own operations."""

    model_config = ConfigDict(extra="forbid")

    name_zh: str | None = Field(default=None, min_length=2, max_length=200)
    name_en: str | None = Field(default=None, max_length=300)
    uscc: str | None = None
    school_code: str | None = None
    district: District | None = None
    address: str | None = Field(default=None, max_length=300)
    industries: list[Industry] | None = Field(default=None, max_length=20)
    keywords: list[str] | None = Field(default=None, max_length=50)
    website: str | None = Field(default=None, max_length=300)
    contact_name: str | None = Field(default=None, max_length=100)
    contact_phone: PhoneNumber | None = Field(default=None, max_length=40)
    contact_email: EmailAddress | None = Field(default=None, max_length=200)

    @field_validator("uscc")
    @classmethod
    def _uscc(cls, v: str | None) -> str | None:
        return _clean_uscc(v)

    @field_validator("school_code")
    @classmethod
    def _school(cls, v: str | None) -> str | None:
        return _clean_school_code(v)


class InstitutionPublic(BaseModel):
    """An institution as shown to callers; contact details only to those allowed to see them."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    name_zh: str
    name_en: str | None
    uscc: str | None
    school_code: str | None
    district: str
    address: str | None
    industries: list[str]
    keywords: list[str]
    website: str | None
    contact_name: str | None = None
    contact_phone: str | None = None
    contact_email: str | None = None
    status: str
    successor_id: str | None
    certification_status: str | None = None
    version: int
    created_at: datetime
    updated_at: datetime


class UsccChangeCreate(BaseModel):
    """Ask the office to change the institution's registered USCC."""

    uscc: str = Field(description="the new USCC (checked like any USCC; full-width input is normalised)")
    reason: str | None = Field(default=None, max_length=500)

    @field_validator("uscc")
    @classmethod
    def _uscc(cls, v: str) -> str:
        cleaned = _clean_uscc(v)
        if cleaned is None:
            raise ValueError("a USCC is needed")
        return cleaned


class Decision(BaseModel):
    """The office's decision note."""

    note: str | None = Field(default=None, max_length=500)


class UsccChangePublic(BaseModel):
    """A USCC change request and its decision."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    institution_id: str
    current_uscc: str | None
    requested_uscc: str
    reason: str | None
    status: str
    requested_at: datetime
    decided_at: datetime | None
    decision_note: str | None


class StatusChange(BaseModel):
    """Set an institution active or inactive (withdrawal into a successor is a merge)."""

    status: InstitutionStatus
    reason: str | None = Field(default=None, max_length=500)


class MergeRequest(BaseModel):
    """Withdraw this record into `successor_id` (a duplicate of it)."""

    successor_id: str
    reason: str | None = Field(default=None, max_length=500)


class RevisionPublic(BaseModel):
    """One entry of an institution's change history."""

    model_config = ConfigDict(from_attributes=True)

    version: int
    change: str
    actor: str
    changed_at: datetime
    changes: dict[str, Any]


class Page(BaseModel, Generic[T]):
    """A page of results with an opaque cursor for the next one."""

    items: list[T]
    next_cursor: str | None = None


class ImportRowReport(BaseModel):
    """What happened to one spreadsheet row (rows count from 2: row 1 is the header)."""

    row: int
    outcome: str = Field(description="created | updated | unchanged | duplicate | invalid | skipped | not_applied")
    id: str | None = None
    name_zh: str | None = None
    errors: list[str] = []


class ImportReport(BaseModel):
    """The per-row validation report of an import."""

    applied: bool
    atomic: bool
    mode: str = Field(description="create: rows differing from an existing record are duplicates; upsert: updates")
    total: int
    created: int
    updated: int
    unchanged: int
    rejected: int
    rows: list[ImportRowReport]


# --- certification -----------------------------------------------------------------------------------------------

class BatchCreate(BaseModel):
    """A yearly certification batch."""

    name: str = Field(min_length=2, max_length=100, description="e.g. 2026 第一批")
    year: int = Field(ge=2019, le=2100)
    objection_window_days: int = Field(default=5, ge=1, le=60)


class BatchPublic(BaseModel):
    """A certification batch."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    year: int
    objection_window_days: int
    status: str
    created_at: datetime


class PoolEntry(BaseModel):
    """Put an enterprise into the cultivation pool."""

    institution_id: str


class CertificationStep(BaseModel):
    """One lifecycle step; `batch_id` is needed to apply, `note` is kept in the file's history."""

    action: CertAction
    batch_id: str | None = None
    note: str | None = Field(default=None, max_length=1000)


class CertificationPublic(BaseModel):
    """A certified-enterprise file as the office and the enterprise see it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    institution_id: str
    enterprise_name: str
    batch_id: str | None
    status: str
    evaluation_result: str | None
    certified_at: datetime | None
    announced_at: datetime | None
    objection_deadline: datetime | None
    allowed_actions: list[str] = []
    history: list[dict[str, Any]]
    version: int
    updated_at: datetime


class CertifiedEnterprise(BaseModel):
    """An entry of the public list of certified enterprises (open data)."""

    institution_id: str
    enterprise_name: str
    uscc: str | None
    district: str | None
    industries: list[str]
    batch_name: str | None
    year: int | None
    status: str
    announced_at: datetime | None
    objection_deadline: datetime | None
    objection_window_open: bool


# --- bases, alliances, mentors ----------------------------------------------------------------------------------

class BaseCreate(BaseModel):
    """A base with its host institutions."""

    name_zh: str = Field(min_length=2, max_length=200)
    base_type: BaseType
    category: BaseCategory
    host_institution_ids: list[str] = Field(min_length=1, max_length=20)
    capacity: int = Field(default=0, ge=0, le=1_000_000)
    industries: list[Industry] = Field(default_factory=list, max_length=20)
    district: District | None = None
    address: str | None = Field(default=None, max_length=300)


class BaseUpdate(BaseModel):
    """A partial update of a base."""

    model_config = ConfigDict(extra="forbid")

    name_zh: str | None = Field(default=None, min_length=2, max_length=200)
    category: BaseCategory | None = None
    host_institution_ids: list[str] | None = Field(default=None, min_length=1, max_length=20)
    capacity: int | None = Field(default=None, ge=0, le=1_000_000)
    industries: list[Industry] | None = Field(default=None, max_length=20)
    district: District | None = None
    address: str | None = Field(default=None, max_length=300)


class BasePublic(BaseModel):
    """A base."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name_zh: str
    base_type: str
    category: str
    host_institution_ids: list[str]
    capacity: int
    industries: list[str]
    district: str | None
    address: str | None
    pending_host_ids: list[str] = Field(default_factory=list, description="named co-hosts yet to confirm")
    status: str
    version: int
    created_at: datetime
    updated_at: datetime


class AllianceMember(BaseModel):
    """A member institution and its role."""

    institution_id: str
    role: MemberRole = MemberRole.MEMBER


class AllianceCreate(BaseModel):
    """A new alliance led by `lead_institution_id` (which becomes a member with role lead)."""

    name_zh: str = Field(min_length=2, max_length=200)
    kind: AllianceKind
    lead_institution_id: str
    industries: list[Industry] = Field(default_factory=list, max_length=20)
    members: list[AllianceMember] = Field(default_factory=list, max_length=500)


class JoinRequestPublic(BaseModel):
    """A pending join: an institution's request (the lead answers) or the lead's invitation (the institution does)."""

    institution_id: str
    role: str
    initiated_by: str = Field(description="institution | lead")
    requested_at: str


class JoinAnswer(BaseModel):
    """Accepting a pending join; the lead may set the role (default: the one asked for)."""

    role: MemberRole | None = None


class AlliancePublic(BaseModel):
    """An alliance."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name_zh: str
    kind: str
    lead_institution_id: str
    industries: list[str]
    members: list[dict[str, str]]
    join_requests: list[JoinRequestPublic] = []
    status: str
    version: int
    created_at: datetime
    updated_at: datetime


class MentorCreate(BaseModel):
    """A person proposed for the faculty pool by their institution."""

    institution_id: str
    title: MentorTitle
    name: str = Field(min_length=1, max_length=100)
    phone: PhoneNumber | None = Field(default=None, max_length=40)
    email: EmailAddress | None = Field(default=None, max_length=200)
    id_number: str | None = Field(default=None, max_length=30)
    industries: list[Industry] = Field(default_factory=list, max_length=20)
    expertise: str | None = Field(default=None, max_length=500)


class MentorUpdate(BaseModel):
    """A partial update of a mentor."""

    model_config = ConfigDict(extra="forbid")

    title: MentorTitle | None = None
    name: str | None = Field(default=None, min_length=1, max_length=100)
    phone: PhoneNumber | None = Field(default=None, max_length=40)
    email: EmailAddress | None = Field(default=None, max_length=200)
    industries: list[Industry] | None = Field(default=None, max_length=20)
    expertise: str | None = Field(default=None, max_length=500)


class ConsentRecord(BaseModel):
    """The person's consent to be listed publicly (given) or its withdrawal (not given)."""

    given: bool
    method: str = Field(default="signed_form", max_length=100, description="how consent was obtained")


class MentorPublic(BaseModel):
    """A mentor; phone, email and ID number only for the office and the mentor's institution (ID always masked)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    institution_id: str
    title: str
    name: str | None
    phone: str | None = None
    email: str | None = None
    id_number: str | None = None
    industries: list[str]
    expertise: str | None
    status: str
    consent_given_at: datetime | None = None
    version: int
    updated_at: datetime
