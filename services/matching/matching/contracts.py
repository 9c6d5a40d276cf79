"""Events matching publishes, and its reading of the events it consumes (consumer-side contracts)."""

from __future__ import annotations

from pydantic import BaseModel

REGISTRY_INSTITUTION_TOPIC = "registry.institution.v1"
INSTITUTION_EVENT_NAMES = ("registry.institution.registered",)

PUBLISHED_TOPICS: list[str] = ["matching.opportunity.v1"]


class RegistryInstitution(BaseModel):
    """What matching reads from a registry.institution.v1 payload (extra fields are ignored)."""

    id: str
    kind: str
    name_zh: str
    district: str
    industries: list[str] = []
    keywords: list[str] = []
    status: str
    successor_id: str | None = None
    version: int
