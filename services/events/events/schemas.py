"""Request and response models of the events API (one schema family per entity)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, TypeVar
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from common.contact import EmailAddress, PhoneNumber
from common.values import utc_instant
from events.domain import ActivityKind, ActivityStatus, Audience, ParticipantKind

SHANGHAI = ZoneInfo("Asia/Shanghai")
T = TypeVar("T")


def _shanghai(value: datetime) -> datetime:
    """Naive times are Shanghai wall-clock times; everything is shown in Asia/Shanghai."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=SHANGHAI)
    utc_instant(value)  # 422, not a 500 later, for a time with no UTC form (0001-01-01T00:00+08:00)
    try:
        return value.astimezone(SHANGHAI)
    except OverflowError:
        raise ValueError("the time is out of range in Asia/Shanghai") from None


LocalTime = Annotated[datetime, AfterValidator(_shanghai)]


class Page(BaseModel, Generic[T]):
    """A page of results and the cursor of the next one (None on the last page)."""

    items: list[T]
    next_cursor: str | None = None


class ActivityCreate(BaseModel):
    """A new activity, created as a draft; times are Asia/Shanghai unless they carry an offset."""

    kind: ActivityKind
    title_zh: str = Field(min_length=2, max_length=300)
    title_en: str | None = Field(default=None, max_length=300)
    description_zh: str | None = Field(default=None, max_length=20_000)
    description_en: str | None = Field(default=None, max_length=20_000)
    organiser_id: str = Field(max_length=36)
    co_organiser_ids: list[str] = Field(default_factory=list, max_length=10)
    venue: str | None = Field(default=None, max_length=300)
    online_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://")
    starts_at: LocalTime
    ends_at: LocalTime
    capacity: int | None = Field(default=None, ge=1, le=1_000_000)
    audience: list[Audience] = Field(default_factory=list)
    industries: list[str] = Field(default_factory=list, max_length=20)
    offer_ttl_seconds: int | None = Field(default=None, ge=60, le=30 * 86400,
                                          description="how long a waitlist offer stays open (default: service setting)")

    @model_validator(mode="after")
    def _ordered(self):
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if not (self.venue or self.online_url):
            raise ValueError("an activity needs a venue or an online_url")
        return self


class ActivityPublic(BaseModel):
    """An activity as anyone sees it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    title_zh: str
    title_en: str | None
    description_zh: str | None
    description_en: str | None
    organiser_id: str
    organiser_name: str | None = None
    co_organiser_ids: list[str]
    venue: str | None
    online_url: str | None
    starts_at: LocalTime
    ends_at: LocalTime
    capacity: int | None
    audience: list[str]
    industries: list[str]
    offer_ttl_seconds: int | None
    status: str
    cancel_reason: str | None
    allowed_transitions: list[str] = Field(default_factory=list)
    version: int


class TransitionRequest(BaseModel):
    """Move an activity to another status (a cancellation may say why)."""

    status: ActivityStatus
    reason: str | None = Field(default=None, max_length=500)


class CapacityChange(BaseModel):
    """New capacity of a pool (null: unlimited); raising it makes offers to the waitlist."""

    capacity: int | None = Field(ge=1, le=1_000_000)


class SessionCreate(BaseModel):
    """A session inside an activity, with its own capacity."""

    title_zh: str = Field(min_length=2, max_length=300)
    title_en: str | None = Field(default=None, max_length=300)
    venue: str | None = Field(default=None, max_length=300)
    starts_at: LocalTime
    ends_at: LocalTime
    capacity: int | None = Field(default=None, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _ordered(self):
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class SessionPublic(BaseModel):
    """A session and its seat counts."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    activity_id: str
    title_zh: str
    title_en: str | None
    venue: str | None
    starts_at: LocalTime
    ends_at: LocalTime
    capacity: int | None
    confirmed: int = 0
    waitlisted: int = 0


class RegistrationCreate(BaseModel):
    """Register yourself (individual) or your institution; `session_id` registers for a session's pool."""

    session_id: str | None = None
    participant_kind: ParticipantKind = ParticipantKind.INDIVIDUAL
    institution_id: str | None = Field(default=None, max_length=36)
    display_name: str | None = Field(default=None, max_length=200)
    contact_phone: PhoneNumber | None = Field(default=None, max_length=40)
    contact_email: EmailAddress | None = Field(default=None, max_length=200)
    public_consent: bool = Field(default=False, description="appear on the public participant list")

    @model_validator(mode="after")
    def _kind(self):
        if self.participant_kind == ParticipantKind.TEAM:
            raise ValueError("teams register by forming a team in the competition (POST /activities/{id}/teams)")
        if self.participant_kind == ParticipantKind.INSTITUTION and not self.institution_id:
            raise ValueError("an institution registration names the institution_id")
        return self


class RegistrationPublic(BaseModel):
    """A registration; contact details and the check-in token only for the registrant (and the office)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    activity_id: str
    session_id: str | None
    pool_id: str
    participant_id: str
    participant_kind: str
    display_name: str | None
    institution_id: str | None
    team_id: str | None
    status: str
    queue_position: int | None = None
    offer_expires_at: LocalTime | None
    public_consent: bool
    contact_phone: str | None = None
    contact_email: str | None = None
    checkin_token: str | None = None
    checked_in: bool = False
    version: int
    created_at: LocalTime


class ConsentChange(BaseModel):
    """Give or take back consent to appear on the public participant list."""

    public_consent: bool


class ParticipantPublic(BaseModel):
    """A line of the public participant list (consenting, confirmed registrants only)."""

    display_name: str | None
    participant_kind: str
    institution_name: str | None


class CheckinListCreate(BaseModel):
    """A named check-in list, optionally limited to one session's registrants."""

    name: str = Field(min_length=1, max_length=200)
    session_id: str | None = None


class CheckinListPublic(BaseModel):
    """A check-in list."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    activity_id: str
    name: str
    session_id: str | None


class CheckinRequest(BaseModel):
    """The opaque token read from a registrant's QR code."""

    token: str = Field(min_length=8, max_length=64)


class CheckinResult(BaseModel):
    """Outcome of a scan; `already` when this list had seen the registration before."""

    registration_id: str
    display_name: str | None
    list_id: str
    already: bool
    checked_in_at: LocalTime


class ListAttendance(BaseModel):
    """Scans on one list."""

    list_id: str
    name: str
    session_id: str | None
    expected: int
    checked_in: int


class Attendance(BaseModel):
    """Attendance figures of an activity."""

    activity_id: str
    confirmed: int
    waitlisted: int
    checked_in_any: int
    attendance_rate: float | None
    lists: list[ListAttendance]
