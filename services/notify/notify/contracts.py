"""Events notify publishes, and its reading of the events it consumes (consumer-side models of producers' payloads)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from common.events import EventContract

REGISTRY_INSTITUTION_TOPIC = "registry.institution.v1"
REGISTRY_CONTACT_TOPIC = "registry.contact.v1"
REGISTRY_CERTIFICATION_TOPIC = "registry.certification.v1"
EVENTS_ACTIVITY_TOPIC = "events.activity.v1"
EVENTS_REGISTRATION_TOPIC = "events.registration.v1"
EVENTS_COMPETITION_TOPIC = "events.competition.v1"
MATCHING_MATCH_TOPIC = "matching.match.v1"
MATCHING_PLACEMENT_TOPIC = "matching.placement.v1"
DELIVERY_TOPIC = "notify.delivery.v1"
PUBLISHED_TOPICS = [DELIVERY_TOPIC]

OFFICE_INBOX = "role:office_admin"
PUBLIC_CERTIFICATION_FEED = "public:certifications"


def institution_inbox(institution_id: str) -> str:
    """The inbox address of an institution (read by its institution administrators)."""
    return f"institution:{institution_id}"


class _Consumed(BaseModel):
    """Consumer-side payloads ignore fields notify does not use (producers may add fields within a version)."""

    model_config = ConfigDict(extra="ignore")


class RegistryInstitution(_Consumed):
    """What notify reads from a registry.institution.v1 payload."""

    id: str
    kind: str
    name_zh: str
    district: str | None = None
    status: str | None = None
    version: int = 0


class RegistryContact(_Consumed):
    """registry.contact.v1: an institution's contact (personal data; kept in notify's own projection only)."""

    institution_id: str
    contact_name: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None
    version: int = 0


class RegistryCertification(_Consumed):
    """registry.certification.v1: an enterprise's certification as an industry-education integration enterprise."""

    id: str
    institution_id: str
    enterprise_name: str
    batch_name: str | None = None
    year: int | None = None
    status: str
    is_certified: bool = False
    evaluation_result: str | None = None
    action: str | None = None
    note: str | None = None
    objection_deadline: datetime | None = None
    version: int = 0


class EventsActivity(_Consumed):
    """events.activity.v1: an activity (fair, lecture, competition)."""

    id: str
    kind: str | None = None
    title_zh: str
    organiser_id: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    status: str
    version: int = 0


class EventsRegistration(_Consumed):
    """events.registration.v1: one participant's registration for an activity."""

    id: str
    activity_id: str
    activity_title: str | None = None
    session_id: str | None = None
    participant_id: str
    participant_kind: str | None = None
    institution_id: str | None = None
    team_id: str | None = None
    status: str
    queue_position: int | None = None
    offer_expires_at: datetime | None = None
    version: int = 0


class CompetitionResult(_Consumed):
    """One line of a competition's published results."""

    rank: int | None = None
    team_id: str | None = None
    team_name: str | None = None
    institution_id: str | None = None
    score: float | None = None
    award: str | None = None


class EventsCompetition(_Consumed):
    """events.competition.v1: a competition and (once published) its results."""

    id: str
    activity_id: str | None = None
    title_zh: str
    status: str | None = None
    results: list[CompetitionResult] = []
    version: int = 0


class MatchingMatch(_Consumed):
    """matching.match.v1: a proposed cooperation between two institutions."""

    id: str
    opportunity_id: str | None = None
    opportunity_title: str | None = None
    from_institution_id: str
    to_institution_id: str
    status: str
    version: int = 0


class PlacementReason(BaseModel):
    """Why a participant was not placed at one position: a code and its wording in both languages."""

    code: str
    position_id: str | None = None
    detail_en: str
    detail_zh: str


class MatchingPlacement(_Consumed):
    """matching.placement.v1 (assigned / unplaced): one participant's placement result."""

    round_id: str | None = None
    round_name: str | None = None
    participant_id: str
    position_id: str | None = None
    position_title: str | None = None
    host_institution_id: str | None = None
    status: str | None = None
    reason: str | None = None
    reasons: list[PlacementReason] = Field(default_factory=list)
    version: int = 0


class DeliveryPayload(BaseModel):
    """The public state of one delivery attempt chain (no addresses: those are personal data)."""

    id: str
    notification_id: str | None
    event_id: str
    recipient: str
    channel: str
    status: str
    reason: str | None
    attempts: int
    version: int


DeliveryQueued = EventContract(DELIVERY_TOPIC, "notify.delivery.queued", DeliveryPayload,
                               "A delivery over email, SMS or webhook was planned.")
DeliverySent = EventContract(DELIVERY_TOPIC, "notify.delivery.sent", DeliveryPayload,
                             "The channel accepted the message (SMTP 250, SMS provider OK); final delivery unknown.")
DeliveryDelivered = EventContract(DELIVERY_TOPIC, "notify.delivery.delivered", DeliveryPayload,
                                  "The receiver confirmed (webhook 2xx, SMS delivery receipt).")
DeliveryFailed = EventContract(DELIVERY_TOPIC, "notify.delivery.failed", DeliveryPayload,
                               "An attempt failed; another is scheduled (reason kept).")
DeliveryDead = EventContract(DELIVERY_TOPIC, "notify.delivery.dead", DeliveryPayload,
                             "No more attempts (permanent failure, attempts exhausted, or interrupted mid-send).")

DELIVERY_CONTRACTS = {
    "queued": DeliveryQueued, "sent": DeliverySent, "delivered": DeliveryDelivered,
    "failed": DeliveryFailed, "dead": DeliveryDead,
}
