"""Events the events service publishes, and its reading of the events it consumes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from common.events import EventContract

REGISTRY_INSTITUTION_TOPIC = "registry.institution.v1"
ACTIVITY_TOPIC = "events.activity.v1"
PUBLISHED_TOPICS = [ACTIVITY_TOPIC, "events.registration.v1", "events.competition.v1"]


class RegistryInstitution(BaseModel):
    """What the events service reads from a registry.institution.v1 payload."""

    id: str
    kind: str
    name_zh: str
    status: str
    successor_id: str | None = None
    version: int


class ActivityPayload(BaseModel):
    """Public facts about an activity."""

    id: str
    kind: str
    title_zh: str
    organiser_id: str
    starts_at: datetime
    ends_at: datetime
    status: str
    version: int


ActivityCreated = EventContract(ACTIVITY_TOPIC, "events.activity.created", ActivityPayload, "A draft activity was created.")
