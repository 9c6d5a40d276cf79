"""Request and response models of the matching API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.contact import EmailAddress, PhoneNumber
from common.values import utc_instant
from matching.domain import DISTRICTS, Direction, OpportunityKind


def _district(v: str | None) -> str | None:
    if v is not None and v not in DISTRICTS:
        raise ValueError(f"unknown district {v!r}; one of: {', '.join(DISTRICTS)}")
    return v


class OpportunityBase(BaseModel):
    """Fields an institution writes when it posts an opportunity or an offer."""

    title_zh: str = Field(min_length=1, max_length=200)
    description_zh: str = Field(default="", max_length=5000)
    skills: list[str] = Field(default_factory=list, max_length=50)
    industries: list[str] = Field(default_factory=list, max_length=20)
    district: str | None = None
    capacity: int = Field(default=1, ge=1, le=100000, description="headcount, seats or number of partners")
    budget_cny: int | None = Field(default=None, ge=0)
    deadline: datetime | None = None
    contact_name: str | None = Field(default=None, max_length=100)
    contact_phone: PhoneNumber | None = Field(default=None, max_length=40)
    contact_email: EmailAddress | None = Field(default=None, max_length=200)

    _check_district = field_validator("district")(classmethod(lambda cls, v: _district(v)))

    @field_validator("deadline")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("deadline needs a time zone (e.g. 2026-12-31T18:00:00+08:00)")
        if v is not None:
            utc_instant(v)  # 422 for a deadline with no UTC form (9999-12-31T23:59:59-01:00), not a 500 later
        return v


class OpportunityCreate(OpportunityBase):
    """A new opportunity (direction demand) or offer (direction offer); created as a draft unless open=true."""

    kind: OpportunityKind
    direction: Direction = Direction.DEMAND
    institution_id: str = Field(min_length=1, max_length=36)
    open: bool = False


class OpportunityUpdate(BaseModel):
    """A partial edit (draft or open opportunities only)."""

    title_zh: str | None = Field(default=None, min_length=1, max_length=200)
    description_zh: str | None = Field(default=None, max_length=5000)
    skills: list[str] | None = None
    industries: list[str] | None = None
    district: str | None = None
    capacity: int | None = Field(default=None, ge=1, le=100000)
    budget_cny: int | None = Field(default=None, ge=0)
    deadline: datetime | None = None

    _check_district = field_validator("district")(classmethod(lambda cls, v: _district(v)))


class OpportunityPublic(BaseModel):
    """An opportunity as shown to callers; contact fields only for its institution and the office."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    direction: str
    kind: str
    title_zh: str
    description_zh: str
    skills: list[str]
    industries: list[str]
    district: str | None
    capacity: int
    seats_taken: int = 0
    budget_cny: int | None
    deadline: datetime | None
    institution_id: str | None
    employer_name: str | None
    source: str
    external_id: str | None
    status: str
    version: int
    created_at: datetime
    opened_at: datetime | None
    updated_at: datetime
    contact_name: str | None = None
    contact_phone: str | None = None
    contact_email: str | None = None


class Page(BaseModel):
    """A page of opportunities."""

    items: list[OpportunityPublic]
    total: int


class RecommendationPublic(BaseModel):
    """One recommended candidate with its score broken down so users can see why."""

    rank: int
    candidate_type: str
    candidate_id: str
    institution_id: str
    name: str
    score: float
    components: dict[str, float]
    weights: dict[str, float]
    contributions: dict[str, float]
    reasons: list[str]
    shared_industries: list[str]
    shared_terms: list[str]


class RecommendationList(BaseModel):
    """Recommendations for one opportunity, with the tokens its text was segmented into."""

    opportunity_id: str
    query_terms: list[str]
    candidates_considered: int
    items: list[RecommendationPublic]


class MatchCreate(BaseModel):
    """An expression of interest about an opportunity, from one institution to another."""

    opportunity_id: str
    to_institution_id: str | None = Field(default=None, description="defaults to the opportunity's institution")
    from_institution_id: str | None = Field(default=None, description="defaults to the caller's institution")
    offer_id: str | None = None
    seats: int = Field(default=1, ge=1, le=100000)
    message: str = Field(default="", max_length=2000)


class Outcomes(BaseModel):
    """What a completed collaboration delivered."""

    students_trained: int = Field(default=0, ge=0)
    hires: int = Field(default=0, ge=0)
    projects_delivered: int = Field(default=0, ge=0)


class MatchAction(BaseModel):
    """Optional body of a match action: outcomes when completing, and a note for the progress log."""

    outcomes: Outcomes | None = None
    note: str = Field(default="", max_length=2000)


class ProgressNote(BaseModel):
    """A note for a match's progress log, without a change of status (long-term tracking, 长效跟踪)."""

    note: str = Field(min_length=1, max_length=2000)


class ProgressEntry(BaseModel):
    """One entry of a match's progress log."""

    at: datetime
    action: str
    status: str
    note: str
    by: str = Field(description="who: the person (name or subject) or, for office staff, the office")
    by_institution_id: str | None


class MatchPublic(BaseModel):
    """A match as shown to the two institutions and the office."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    opportunity_id: str
    offer_id: str | None
    from_institution_id: str
    to_institution_id: str
    status: str
    seats: int
    message: str
    outcomes: dict | None
    progress: list[ProgressEntry] = []
    expires_at: datetime | None
    proposed_at: datetime
    decided_at: datetime | None
    completed_at: datetime | None
    version: int
    updated_at: datetime


class OutcomeRow(BaseModel):
    """Outcome figures for one institution, industry or district."""

    key: str
    completed: int
    cancelled: int
    in_progress: int
    students_trained: int
    hires: int
    projects_delivered: int


class PositionIn(BaseModel):
    """A position of a placement round."""

    id: str = Field(min_length=1, max_length=100)
    title: str = Field(default="", max_length=200)
    host_institution_id: str | None = None
    capacity: int = Field(ge=0, le=100000)
    ranking: list[str] | None = Field(default=None, description="participants in order; null = no preference")
    reserved: dict[str, int] = Field(default_factory=dict, description="category -> seats reserved for it")


class ParticipantIn(BaseModel):
    """A participant of a placement round with a ranked list of positions."""

    id: str = Field(min_length=1, max_length=200)
    preferences: list[str] = Field(default_factory=list, max_length=200)
    category: str | None = Field(default=None, max_length=60)


class TeamIn(BaseModel):
    """A team placed together or not at all."""

    id: str = Field(min_length=1, max_length=200)
    members: list[str] = Field(min_length=1, max_length=50)
    preferences: list[str] = Field(default_factory=list, max_length=200)


class PlacementRoundCreate(BaseModel):
    """A placement round; the seed is published at creation (given, or drawn by the platform)."""

    name: str = Field(min_length=1, max_length=200)
    kind: str = Field(default="internship", max_length=40)
    seed: int | None = Field(default=None, ge=0, lt=2**31)
    positions: list[PositionIn] = Field(min_length=1)
    participants: list[ParticipantIn]
    teams: list[TeamIn] = Field(default_factory=list)
    host_capacities: dict[str, int] = Field(default_factory=dict)


class PlacementRoundPublic(BaseModel):
    """A placement round's summary (participants' details only for the office)."""

    id: str
    name: str
    kind: str
    seed: int
    status: str
    version: int
    created_at: datetime
    published_at: datetime | None
    positions: int
    participants: int
    placed: int | None = None
    unplaced: int | None = None
    problem: dict | None = None
    result: dict | None = None


class ParticipantResult(BaseModel):
    """One participant's placement, or the reasons they were not placed."""

    round_id: str
    participant_id: str
    status: str
    position_id: str | None
    position_title: str | None
    choice_rank: int | None
    lottery_number: int | None
    reasons: list[dict]
