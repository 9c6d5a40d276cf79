"""Events notify publishes, and its reading of the events it consumes."""

from __future__ import annotations

from pydantic import BaseModel

REGISTRY_INSTITUTION_TOPIC = "registry.institution.v1"
DELIVERY_TOPIC = "notify.delivery.v1"
PUBLISHED_TOPICS = [DELIVERY_TOPIC]

OFFICE_INBOX = "role:office_admin"


class RegistryInstitution(BaseModel):
    """What notify reads from a registry.institution.v1 payload."""

    id: str
    kind: str
    name_zh: str
    district: str
