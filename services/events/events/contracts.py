"""Events the events service publishes, and its reading of the events it consumes (docs/event-catalogue.md)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from common.events import EventContract

REGISTRY_INSTITUTION_TOPIC = "registry.institution.v1"
REGISTRY_ALLIANCE_TOPIC = "registry.alliance.v1"
REGISTRY_MENTOR_TOPIC = "registry.mentor.v1"
ACTIVITY_TOPIC = "events.activity.v1"
REGISTRATION_TOPIC = "events.registration.v1"
COMPETITION_TOPIC = "events.competition.v1"
PUBLISHED_TOPICS = [ACTIVITY_TOPIC, REGISTRATION_TOPIC, COMPETITION_TOPIC]


# ---------------------------------------------------------------------------------------------- consumed


class RegistryInstitution(BaseModel):
    """What the events service reads from a registry.institution.v1 payload."""

    id: str
    kind: str
    name_zh: str
    status: str
    successor_id: str | None = None
    version: int


class AllianceMember(BaseModel):
    """A member line of an alliance."""

    institution_id: str
    role: str | None = None


class RegistryAlliance(BaseModel):
    """What the events service reads from a registry.alliance.v1 payload."""

    id: str
    name_zh: str
    status: str
    lead_institution_id: str | None = None
    members: list[AllianceMember] = Field(default_factory=list)
    version: int


class RegistryMentor(BaseModel):
    """What the events service reads from a registry.mentor.v1 payload: whose pool a mentor (expert judge) is in."""

    id: str
    institution_id: str
    status: str
    version: int


# ---------------------------------------------------------------------------------------------- published


class ActivityPayload(BaseModel):
    """Public facts about an activity; `registrant_ids` lists the active registrants' subs on `cancelled` only."""

    id: str
    kind: str
    title_zh: str
    title_en: str | None = None
    organiser_id: str
    co_organiser_ids: list[str] = Field(default_factory=list)
    starts_at: datetime
    ends_at: datetime
    venue: str | None = None
    online_url: str | None = None
    audience: list[str] = Field(default_factory=list)
    industries: list[str] = Field(default_factory=list)
    capacity: int | None = None
    status: str
    cancel_reason: str | None = None
    registrant_ids: list[str] = Field(default_factory=list)
    version: int


class RegistrationPayload(BaseModel):
    """A registration's public state (no contact details); `queue_position` only while waitlisted."""

    id: str
    activity_id: str
    activity_title: str
    session_id: str | None
    pool_id: str
    participant_id: str
    participant_kind: str
    institution_id: str | None
    team_id: str | None
    status: str
    queue_position: int | None
    offer_expires_at: datetime | None
    checkin_list_id: str | None = None
    reason: str | None = None
    version: int


class ResultLine(BaseModel):
    """One line of published results."""

    rank: int
    team_id: str
    team_name: str
    track_id: str
    institution_id: str
    score: float
    award: str | None


class CompetitionPayload(BaseModel):
    """A competition's state; results filled once published; team/submission fields name what just happened."""

    id: str
    activity_id: str
    title_zh: str
    status: str
    results: list[ResultLine] = Field(default_factory=list)
    tie_break: str | None = None
    frozen_at: datetime | None = None
    team_id: str | None = None
    team_name: str | None = None
    track_id: str | None = None
    institution_id: str | None = None
    submission_id: str | None = None
    version: int


def _activity(name: str, doc: str) -> EventContract:
    return EventContract(ACTIVITY_TOPIC, f"events.activity.{name}", ActivityPayload, doc)


def _registration(name: str, doc: str) -> EventContract:
    return EventContract(REGISTRATION_TOPIC, f"events.registration.{name}", RegistrationPayload, doc)


def _competition(name: str, doc: str) -> EventContract:
    return EventContract(COMPETITION_TOPIC, f"events.competition.{name}", CompetitionPayload, doc)


ActivityCreated = _activity("created", "A draft activity was created.")
ACTIVITY_EVENTS = {
    "published": _activity("published", "An activity became publicly visible."),
    "registration_opened": _activity("registration_opened", "Registration opened."),
    "registration_closed": _activity("registration_closed", "Registration closed."),
    "started": _activity("started", "The activity began."),
    "finished": _activity("finished", "The activity finished."),
    "archived": _activity("archived", "The activity was archived."),
    "cancelled": _activity("cancelled", "The activity was cancelled; registrant_ids names everyone to tell."),
}

RegistrationConfirmed = _registration("confirmed", "A registrant holds a seat.")
RegistrationWaitlisted = _registration("waitlisted", "The pool was full; the registrant is on the waitlist.")
OfferMade = _registration("offer_made", "A seat freed: the next waitlisted registrant has an offer until a deadline.")
OfferExpired = _registration("offer_expired", "An offer lapsed unanswered; the seat moves on.")
RegistrationPromoted = _registration("promoted", "A waitlisted registrant accepted an offer and holds a seat.")
RegistrationWithdrawn = _registration("withdrawn", "The registrant withdrew (or declined an offer).")
CheckedIn = _registration("checked_in", "The registrant was checked in on a check-in list.")

TeamRegistered = _competition("team_registered", "A team was formed and registered.")
SubmissionReceived = _competition("submission_received", "A team submitted (or replaced) its entry.")
ScoreboardFrozen = _competition("scoreboard_frozen", "The public scoreboard was frozen.")
ResultsPublished = _competition("results_published", "Final rankings and awards were published.")
