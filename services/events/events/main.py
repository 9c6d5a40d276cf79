"""The events service: conferences, exhibitions, job fairs, training camps and skills competitions."""

from __future__ import annotations

from fastapi import FastAPI

from common.consumer import subscribe
from common.service import ConsumerSpec, ServiceSpec, create_service_app
from events import handlers
from events.api import router
from events.config import MIGRATIONS, Settings
from events.contracts import PUBLISHED_TOPICS, REGISTRY_INSTITUTION_TOPIC
from events.models import outbox, processed_events


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the events app (uvicorn --factory events.main:create_app)."""
    settings = settings or Settings()
    prefix = settings.event_type_prefix
    registry_feed = ConsumerSpec("registry-projection", [
        subscribe(REGISTRY_INSTITUTION_TOPIC, prefix, {
            "registry.institution.registered": handlers.project_institution,
        }),
    ])
    return create_service_app(ServiceSpec(
        settings=settings,
        title="Events service",
        description="Activities and competitions: registration, waitlists, check-in, teams, judging, results.",
        routers=[router],
        outbox=outbox,
        processed=processed_events,
        migrations=MIGRATIONS,
        published_topics=PUBLISHED_TOPICS,
        consumers=[registry_feed],
    ))
