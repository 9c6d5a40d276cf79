"""The notify service: in-app inbox, email, webhooks, templates, preferences and digests."""

from __future__ import annotations

from fastapi import FastAPI

from common.consumer import subscribe
from common.service import ConsumerSpec, ServiceSpec, create_service_app
from notify import handlers
from notify.api import router
from notify.config import MIGRATIONS, Settings
from notify.contracts import PUBLISHED_TOPICS, REGISTRY_INSTITUTION_TOPIC
from notify.models import outbox, processed_events


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the notify app (uvicorn --factory notify.main:create_app)."""
    settings = settings or Settings()
    prefix = settings.event_type_prefix
    rules = ConsumerSpec("notifications", [
        subscribe(REGISTRY_INSTITUTION_TOPIC, prefix, {
            "registry.institution.registered": handlers.institution_registered,
        }),
    ])
    return create_service_app(ServiceSpec(
        settings=settings,
        title="Notify service",
        description="In-app inbox, email, signed webhooks, templates, preferences and digests.",
        routers=[router],
        outbox=outbox,
        processed=processed_events,
        migrations=MIGRATIONS,
        published_topics=PUBLISHED_TOPICS,
        consumers=[rules],
    ))
