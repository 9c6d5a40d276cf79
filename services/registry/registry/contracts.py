"""Events the registry publishes and consumes: topics, types and payloads (additive changes only within a version)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from common.events import EventContract

INSTITUTION_TOPIC = "registry.institution.v1"
CONTACT_TOPIC = "registry.contact.v1"
CERTIFICATION_TOPIC = "registry.certification.v1"
BASE_TOPIC = "registry.base.v1"
ALLIANCE_TOPIC = "registry.alliance.v1"
MENTOR_TOPIC = "registry.mentor.v1"
MUNICIPAL_ENTERPRISE_TOPIC = "municipal.enterprise.v1"


class InstitutionPayload(BaseModel):
    """Public facts about an institution, as carried by every registry.institution.v1 event (no personal data)."""

    id: str
    kind: str
    name_zh: str
    name_en: str | None = None
    uscc: str | None = None
    school_code: str | None = None
    district: str
    industries: list[str] = []
    keywords: list[str] = []
    status: str
    successor_id: str | None = None
    certification_status: str | None = None
    version: int
    updated_at: datetime


InstitutionRegistered = EventContract(
    INSTITUTION_TOPIC, "registry.institution.registered", InstitutionPayload, "A new institution joined the registry.",
)
InstitutionUpdated = EventContract(
    INSTITUTION_TOPIC, "registry.institution.updated", InstitutionPayload, "An institution's public facts changed.",
)
InstitutionStatusChanged = EventContract(
    INSTITUTION_TOPIC, "registry.institution.status_changed", InstitutionPayload,
    "An institution became active, inactive or withdrawn.",
)
InstitutionMerged = EventContract(
    INSTITUTION_TOPIC, "registry.institution.merged", InstitutionPayload,
    "A duplicate was withdrawn into its successor: the payload is the withdrawn record, successor_id set.",
)


class ContactPayload(BaseModel):
    """An institution's contact person: personal data, internal topic (only notify reads it)."""

    institution_id: str
    contact_name: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None
    version: int


ContactUpdated = EventContract(
    CONTACT_TOPIC, "registry.contact.updated", ContactPayload, "An institution's contact details were set or changed.",
)


class CertificationPayload(BaseModel):
    """A certified-enterprise file after a lifecycle step."""

    id: str
    institution_id: str
    enterprise_name: str
    batch_id: str | None = None
    batch_name: str | None = None
    year: int | None = None
    status: str
    is_certified: bool
    evaluation_result: str | None = None
    action: str | None = None
    note: str | None = Field(default=None, description="the office's note on this step (a rejection's reason)")
    objection_deadline: datetime | None = None
    version: int
    updated_at: datetime


_CERT_EVENTS = {
    "pooled": "The enterprise entered the cultivation pool.",
    "applied": "The enterprise applied in a yearly batch.",
    "reviewed": "The office reviewed the application (status says whether it passed: reviewed or rejected).",
    "certified": "The enterprise was certified.",
    "announced": "The enterprise is on the public list; the objection window is open (or an objection was dismissed).",
    "objection_raised": "An objection was raised during the publicity window.",
    "evaluated": "An annual evaluation passed.",
    "rectification_required": "An annual evaluation asked for rectification.",
    "withdrawn": "The enterprise left the scheme.",
    "revoked": "The certification was revoked (by the office, an upheld objection or a failed evaluation).",
}
CERTIFICATION_EVENTS: dict[str, EventContract] = {
    name: EventContract(CERTIFICATION_TOPIC, f"registry.certification.{name}", CertificationPayload, text)
    for name, text in _CERT_EVENTS.items()
}


class BasePayload(BaseModel):
    """A base's public facts."""

    id: str
    name_zh: str
    base_type: str
    category: str
    host_institution_ids: list[str]
    capacity: int
    industries: list[str]
    district: str | None = None
    status: str
    version: int


BaseCreated = EventContract(BASE_TOPIC, "registry.base.created", BasePayload, "A base was registered.")
BaseUpdated = EventContract(BASE_TOPIC, "registry.base.updated", BasePayload, "A base's facts changed.")
BaseClosed = EventContract(BASE_TOPIC, "registry.base.closed", BasePayload, "A base closed.")


class AllianceMemberPayload(BaseModel):
    """One member of an alliance and its role."""

    institution_id: str
    role: str


class AlliancePayload(BaseModel):
    """An alliance with its lead and members."""

    id: str
    name_zh: str
    kind: str
    lead_institution_id: str
    members: list[AllianceMemberPayload]
    industries: list[str] = []
    status: str
    version: int
    member_institution_id: str | None = Field(default=None, description="who joined or left (member_* events)")


AllianceFormed = EventContract(ALLIANCE_TOPIC, "registry.alliance.formed", AlliancePayload, "An alliance was formed.")
AllianceUpdated = EventContract(ALLIANCE_TOPIC, "registry.alliance.updated", AlliancePayload, "An alliance changed.")
AllianceMemberJoined = EventContract(
    ALLIANCE_TOPIC, "registry.alliance.member_joined", AlliancePayload, "An institution joined an alliance.",
)
AllianceMemberLeft = EventContract(
    ALLIANCE_TOPIC, "registry.alliance.member_left", AlliancePayload, "An institution left an alliance.",
)
AllianceDissolved = EventContract(
    ALLIANCE_TOPIC, "registry.alliance.dissolved", AlliancePayload, "An alliance was dissolved.",
)


class MentorPayload(BaseModel):
    """A mentor in the faculty pool; the name travels only when consent was given (never phone, email or ID)."""

    id: str
    institution_id: str
    title: str
    name: str | None = None
    industries: list[str] = []
    status: str
    version: int


MentorListed = EventContract(MENTOR_TOPIC, "registry.mentor.listed", MentorPayload,
                             "A mentor consented and is listed publicly.")
MentorUpdated = EventContract(MENTOR_TOPIC, "registry.mentor.updated", MentorPayload, "A listed mentor changed.")
MentorUnlisted = EventContract(MENTOR_TOPIC, "registry.mentor.unlisted", MentorPayload,
                               "A mentor was removed from the public list (e.g. consent withdrawn).")


class MunicipalEnterprise(BaseModel):
    """An enterprise record from the city's market-supervision platform; strict types, bounded sizes."""

    model_config = ConfigDict(strict=True, extra="ignore")

    uscc: str = Field(max_length=18)
    name: str = Field(min_length=2, max_length=200)
    district: str = Field(max_length=30)
    industry: str | None = Field(default=None, max_length=60)
    status: str = Field(max_length=20)


MunicipalEnterpriseUpserted = EventContract(
    MUNICIPAL_ENTERPRISE_TOPIC, "municipal.enterprise.upserted", MunicipalEnterprise,
    "Inbound: the city's market-supervision record of an enterprise (upserted by USCC).",
)

PUBLISHED_TOPICS = [INSTITUTION_TOPIC, CONTACT_TOPIC, CERTIFICATION_TOPIC, BASE_TOPIC, ALLIANCE_TOPIC, MENTOR_TOPIC]
