"""Events the registry publishes: topics, types and payloads (additive changes only within a version)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from common.events import EventContract

INSTITUTION_TOPIC = "registry.institution.v1"


class InstitutionPayload(BaseModel):
    """Public facts about an institution, as carried by every registry.institution.v1 event."""

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
    version: int
    updated_at: datetime


InstitutionRegistered = EventContract(
    INSTITUTION_TOPIC, "registry.institution.registered", InstitutionPayload, "A new institution joined the registry.",
)

PUBLISHED_TOPICS = [INSTITUTION_TOPIC]
