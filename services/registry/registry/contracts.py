"""Events the registry publishes and consumes: topics, types and payloads (additive changes only within a version)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.events import EventContract
from common.limits import MAX_RECORD_BYTES
from common.vocabulary import DISTRICT_NAMES_ZH, DISTRICTS, INDUSTRY_NAMES_ZH, USCC_PATTERN

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


class UsccChangePayload(BaseModel):
    """A request to change an institution's registered USCC, and the office's decision."""

    id: str
    institution_id: str
    current_uscc: str | None = None
    requested_uscc: str
    status: str
    reason: str | None = None
    decision_note: str | None = None


UsccChangeRequested = EventContract(
    INSTITUTION_TOPIC, "registry.institution.uscc_change_requested", UsccChangePayload,
    "An institution's administrator asked the office to change its registered USCC.",
)
UsccChangeDecided = EventContract(
    INSTITUTION_TOPIC, "registry.institution.uscc_change_decided", UsccChangePayload,
    "The office approved (the institution's updated event follows) or declined a USCC change request.",
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
    institution_id: str = Field(description="the enterprise's id in registry.institution.v1")
    enterprise_name: str = Field(examples=["上海临港经济发展（集团）有限公司"])
    batch_id: str | None = None
    batch_name: str | None = Field(default=None, examples=["2026年度产教融合型企业"])
    year: int | None = Field(default=None, examples=[2026])
    status: str = Field(examples=["certified"], description=(
        "pooled, applied, reviewed, rejected, certified, announced, objected, rectifying, withdrawn or revoked"))
    is_certified: bool = Field(description="whether the enterprise counts as certified right now")
    evaluation_result: str | None = Field(default=None, examples=["passed"])
    action: str | None = Field(default=None, description="the lifecycle step that produced this event")
    note: str | None = Field(default=None, description="the office's note on this step (a rejection's reason)")
    objection_deadline: datetime | None = Field(default=None, description="end of the publicity window")
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
    pending_host_ids: list[str] = Field(default_factory=list, description="named co-hosts yet to confirm")
    cohost_institution_id: str | None = Field(default=None, description="who was asked or declined (cohost_*)")


BaseCreated = EventContract(BASE_TOPIC, "registry.base.created", BasePayload, "A base was registered.")
BaseCoHostRequested = EventContract(
    BASE_TOPIC, "registry.base.cohost_requested", BasePayload,
    "An institution was named co-host of a base and is asked to confirm (cohost_institution_id).",
)
BaseCoHostDeclined = EventContract(
    BASE_TOPIC, "registry.base.cohost_declined", BasePayload,
    "A named co-host declined, or its invitation was withdrawn (cohost_institution_id); confirming is base.updated.",
)
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
    member_institution_id: str | None = Field(default=None, description="who joined, left or asked (member_*, join_*)")
    requested_role: str | None = Field(default=None, description="the role a join_* event is about")
    initiated_by: str | None = Field(default=None, description="join_*: institution (asks the lead) or lead (invites)")


AllianceFormed = EventContract(ALLIANCE_TOPIC, "registry.alliance.formed", AlliancePayload, "An alliance was formed.")
AllianceUpdated = EventContract(ALLIANCE_TOPIC, "registry.alliance.updated", AlliancePayload, "An alliance changed.")
AllianceMemberJoined = EventContract(
    ALLIANCE_TOPIC, "registry.alliance.member_joined", AlliancePayload, "An institution joined an alliance.",
)
AllianceMemberLeft = EventContract(
    ALLIANCE_TOPIC, "registry.alliance.member_left", AlliancePayload, "An institution left an alliance.",
)
AllianceJoinRequested = EventContract(
    ALLIANCE_TOPIC, "registry.alliance.join_requested", AlliancePayload,
    "An institution asked to join (the lead decides) or the lead invited one (it decides); not yet a member.",
)
AllianceJoinDeclined = EventContract(
    ALLIANCE_TOPIC, "registry.alliance.join_declined", AlliancePayload,
    "A join request or invitation was declined or withdrawn; accepting it is member_joined.",
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


# What the city may send, exactly as the handler accepts it (registry.handlers.parse_municipal_record).
ACTIVE_WORDS = ("存续", "在业", "开业", "active")
INACTIVE_WORDS = ("注销", "吊销", "迁出", "停业", "inactive", "deregistered", "revoked", "cancelled")
MAX_DATA_BYTES = 8192  # the `data` of one record, as compact JSON


class MunicipalEnterprise(BaseModel):
    """An enterprise record from the city's market-supervision platform; strict types, bounded sizes.

    The handler enforces every constraint here, checks the USCC's GB 32100-2015 check character, and refuses a `data`
    over `x-max-data-bytes` of JSON; a whole record may be at most `x-max-record-bytes`. An `industry` from the
    platform's vocabulary (code or Chinese name, see `examples`) is mapped to it; any other is kept as a keyword."""

    model_config = ConfigDict(strict=True, extra="ignore", json_schema_extra={
        "x-max-data-bytes": MAX_DATA_BYTES,
        "x-max-record-bytes": MAX_RECORD_BYTES,
        "examples": [{"uscc": "91310000132214209T", "name": "上海临港经济发展（集团）有限公司",
                      "district": "临港新片区", "industry": "集成电路", "status": "存续"}],
    })

    uscc: str = Field(pattern=USCC_PATTERN, description="unified social credit code: the Kafka key")
    name: str = Field(min_length=2, max_length=200)
    district: Literal[(*DISTRICTS, *DISTRICT_NAMES_ZH)] = Field(
        description="a Shanghai district: its code or its Chinese name")
    industry: str | None = Field(default=None, min_length=1, max_length=60,
                                 examples=[*INDUSTRY_NAMES_ZH, *INDUSTRY_NAMES_ZH.values()],
                                 description="the vocabulary's code or Chinese name maps to an industry; other text "
                                             "is kept as a keyword")
    status: Literal[(*ACTIVE_WORDS, *INACTIVE_WORDS)] = Field(
        description="active: 存续, 在业, 开业, active; inactive: 注销, 吊销, 迁出, 停业, inactive, deregistered, "
                    "revoked, cancelled")


MunicipalEnterpriseUpserted = EventContract(
    MUNICIPAL_ENTERPRISE_TOPIC, "municipal.enterprise.upserted", MunicipalEnterprise,
    "Inbound: the city's market-supervision record of an enterprise (upserted by USCC).",
)

PUBLISHED_TOPICS = [INSTITUTION_TOPIC, CONTACT_TOPIC, CERTIFICATION_TOPIC, BASE_TOPIC, ALLIANCE_TOPIC, MENTOR_TOPIC]
