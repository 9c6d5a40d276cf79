"""The matching service: opportunities, recommendations, match lifecycle and stable placement."""

from __future__ import annotations

from fastapi import FastAPI

from common.consumer import subscribe
from common.service import ConsumerSpec, ServiceSpec, create_service_app
from matching import handlers
from matching.api import router
from matching.config import MIGRATIONS, Settings
from matching.contracts import INSTITUTION_EVENT_NAMES, PUBLISHED_TOPICS, REGISTRY_INSTITUTION_TOPIC
from matching.models import outbox, processed_events


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the matching app (uvicorn --factory matching.main:create_app)."""
    settings = settings or Settings()
    prefix = settings.event_type_prefix
    registry_feed = ConsumerSpec("registry-projection", [
        subscribe(REGISTRY_INSTITUTION_TOPIC, prefix, {n: handlers.project_institution for n in INSTITUTION_EVENT_NAMES}),
    ])
    return create_service_app(ServiceSpec(
        settings=settings,
        title="Matching service",
        description="Opportunities, explainable recommendations, match tracking and stable placement rounds.",
        routers=[router],
        outbox=outbox,
        processed=processed_events,
        migrations=MIGRATIONS,
        published_topics=PUBLISHED_TOPICS,
        consumers=[registry_feed],
    ))
