"""The registry service: institutions, certified enterprises, bases, alliances and the mentor pool."""

from __future__ import annotations

from fastapi import FastAPI

from common.service import ServiceSpec, create_service_app
from registry.api import router
from registry.config import MIGRATIONS, Settings
from registry.contracts import PUBLISHED_TOPICS
from registry.models import outbox, processed_events


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the registry app (uvicorn --factory registry.main:create_app)."""
    settings = settings or Settings()
    return create_service_app(ServiceSpec(
        settings=settings,
        title="Registry service",
        description="Institutions, certified industry-education integration enterprises, bases, alliances, mentors.",
        routers=[router],
        outbox=outbox,
        processed=processed_events,
        migrations=MIGRATIONS,
        published_topics=PUBLISHED_TOPICS,
    ))
