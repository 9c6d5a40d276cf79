"""Events matching publishes, and its reading of the events it consumes (consumer-side contracts)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.events import EventContract
from common.limits import MAX_RECORD_BYTES
from common.vocabulary import DISTRICTS, INDUSTRIES, USCC_PATTERN

REGISTRY_INSTITUTION_TOPIC = "registry.institution.v1"
REGISTRY_CERTIFICATION_TOPIC = "registry.certification.v1"
MUNICIPAL_TALENT_DEMAND_TOPIC = "municipal.talent-demand.v1"
OPPORTUNITY_TOPIC = "matching.opportunity.v1"
MATCH_TOPIC = "matching.match.v1"
PLACEMENT_TOPIC = "matching.placement.v1"

INSTITUTION_EVENT_NAMES = (
    "registry.institution.registered", "registry.institution.updated", "registry.institution.status_changed",
    "registry.institution.merged",
)
CERTIFICATION_EVENT_NAMES = tuple(f"registry.certification.{n}" for n in (
    "applied", "reviewed", "certified", "announced", "objection_raised", "evaluated", "rectification_required",
    "withdrawn", "revoked",
))
TALENT_DEMAND_EVENT_NAMES = ("municipal.talent_demand.posted",)

PUBLISHED_TOPICS: list[str] = [OPPORTUNITY_TOPIC, MATCH_TOPIC, PLACEMENT_TOPIC]


# ---- consumed (consumer-side readings of other producers' payloads) ----

class RegistryInstitution(BaseModel):
    """What matching reads from a registry.institution.v1 payload (extra fields are ignored)."""

    id: str
    kind: str
    name_zh: str
    uscc: str | None = None
    district: str
    industries: list[str] = []
    keywords: list[str] = []
    status: str
    successor_id: str | None = None
    version: int


class RegistryCertification(BaseModel):
    """What matching reads from a registry.certification.v1 payload."""

    id: str
    institution_id: str
    status: str
    is_certified: bool
    year: int | None = None
    version: int


District = Literal[DISTRICTS]
Industry = Literal[INDUSTRIES]


class MunicipalTalentDemand(BaseModel):
    """A position posted on the city's human-resources platform (inbound, strict: anything odd is dead-lettered).

    Every constraint here is enforced by the handler; the employer's USCC must also carry the right GB 32100-2015
    check character. A record (the whole CloudEvent, key and headers) may be at most `x-max-record-bytes`."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, json_schema_extra={
        "x-max-record-bytes": MAX_RECORD_BYTES,
        "examples": [{
            "external_id": "hrss-2026-000183", "employer_uscc": "91310000132214209T",
            "employer_name": "上海临港经济发展（集团）有限公司", "title": "设备维护技术员",
            "skills": ["PLC编程", "电气维修"], "industry": "integrated_circuits", "district": "lingang", "headcount": 8,
            "deadline": "2030-06-30T18:00:00+08:00",
        }],
    })

    external_id: str = Field(min_length=1, max_length=100, description="your id of the position: the Kafka key")
    employer_uscc: str = Field(pattern=USCC_PATTERN, description="the employer's unified social credit code")
    employer_name: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=200)
    skills: list[Annotated[str, Field(min_length=1, max_length=60)]] = Field(default_factory=list, max_length=50)
    industry: Industry = Field(description="a code of the platform's industry vocabulary")
    district: District = Field(description="a Shanghai district code (Lingang New Area: lingang)")
    headcount: int = Field(ge=1, le=100000)
    deadline: datetime = Field(description="ISO 8601 with a time zone")

    @field_validator("deadline")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("deadline needs a time zone")
        return v


TalentDemandPosted = EventContract(
    MUNICIPAL_TALENT_DEMAND_TOPIC, "municipal.talent_demand.posted", MunicipalTalentDemand,
    "Inbound: a position open on the city's human-resources platform (created or updated by external_id).",
)


# ---- published ----

class OpportunityPayload(BaseModel):
    """Public state of an opportunity or offer (no contact details)."""

    id: str
    kind: str
    direction: str
    title_zh: str
    institution_id: str | None
    employer_name: str | None = None
    industries: list[str]
    district: str | None
    capacity: int
    deadline: datetime | None
    status: str
    source: str
    external_id: str | None = None
    version: int


class MatchPayload(BaseModel):
    """Public state of a match between two institutions about an opportunity."""

    id: str
    opportunity_id: str
    opportunity_title: str = Field(examples=["集成电路设备维护订单班"])
    offer_id: str | None = None
    from_institution_id: str = Field(description="the proposer")
    to_institution_id: str = Field(description="the other side")
    status: str = Field(examples=["proposed"], description=(
        "proposed, accepted, declined, expired, withdrawn, agreed, in_progress, completed or cancelled"))
    seats: int
    expires_at: datetime | None
    outcomes: dict[str, int] | None = Field(examples=[{"students_trained": 30, "hires": 6, "projects_delivered": 1}])
    version: int


class PlacementReason(BaseModel):
    """One reason an unplaced participant was not placed at a position: a stable code and its wording for people."""

    code: str = Field(description="e.g. full_of_higher_ranked, not_ranked_by_position, team_does_not_fit")
    position_id: str | None = None
    detail_en: str
    detail_zh: str


class PlacementPayload(BaseModel):
    """One participant's result in a placement round (`reason` explains an unplaced participant)."""

    round_id: str
    round_name: str
    participant_id: str
    position_id: str | None
    position_title: str | None
    host_institution_id: str | None
    status: str  # assigned | unplaced
    reason: str | None
    reasons: list[PlacementReason] = Field(default_factory=list,
                                           description="why an unplaced participant was not placed, per position")
    version: int


class PlacementRoundPayload(BaseModel):
    """A placement round whose results were published, with the lottery seed anyone can re-draw."""

    round_id: str
    round_name: str
    kind: str
    seed: int
    placed: int
    unplaced: int
    status: str
    version: int


def _c(topic: str, name: str, payload: type[BaseModel], description: str) -> EventContract:
    return EventContract(topic, name, payload, description)


OpportunityOpened = _c(OPPORTUNITY_TOPIC, "matching.opportunity.opened", OpportunityPayload, "An opportunity opened.")
OpportunityUpdated = _c(OPPORTUNITY_TOPIC, "matching.opportunity.updated", OpportunityPayload,
                        "An open opportunity changed (edited, reopened, or moved to a merged institution's successor).")
OpportunityMatched = _c(OPPORTUNITY_TOPIC, "matching.opportunity.matched", OpportunityPayload,
                        "Accepted matches took all of an opportunity's capacity.")
OpportunityClosed = _c(OPPORTUNITY_TOPIC, "matching.opportunity.closed", OpportunityPayload, "An opportunity closed.")
OpportunityExpired = _c(OPPORTUNITY_TOPIC, "matching.opportunity.expired", OpportunityPayload,
                        "An opportunity's deadline passed while it was open.")

_CANCELLED = ("The match ended before completion: `status` is `withdrawn` when the proposer withdrew a pending "
              "proposal, `cancelled` when either side cancelled the collaboration.")
MATCH_EVENTS: dict[str, EventContract] = {
    status: _c(MATCH_TOPIC, f"matching.match.{name}", MatchPayload, description)
    for status, name, description in (
        ("proposed", "proposed", "An institution expressed interest in a collaboration."),
        ("accepted", "accepted", "The other side accepted: both sides agree to collaborate."),
        ("declined", "declined", "The other side declined."),
        ("expired", "expired", "A proposal was not answered in time."),
        ("withdrawn", "cancelled", _CANCELLED),
        ("agreed", "agreed", "A collaboration agreement was recorded."),
        ("in_progress", "started", "The collaboration started."),
        ("completed", "completed", "The collaboration completed, with its outcomes."),
        ("cancelled", "cancelled", _CANCELLED),
    )
}

PlacementAssigned = _c(PLACEMENT_TOPIC, "matching.placement.assigned", PlacementPayload,
                       "A participant was placed in a position.")
PlacementUnplaced = _c(PLACEMENT_TOPIC, "matching.placement.unplaced", PlacementPayload,
                       "A participant could not be placed; `reason` says why.")
PlacementRoundPublished = _c(PLACEMENT_TOPIC, "matching.placement.round_published", PlacementRoundPayload,
                             "A placement round's results were published.")
