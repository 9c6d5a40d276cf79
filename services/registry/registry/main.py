"""The registry service: institutions, certified enterprises, bases, alliances and the mentor pool."""

from __future__ import annotations

from fastapi import FastAPI

from common.consumer import subscribe
from common.outbox import EventStager
from common.service import ConsumerSpec, ServiceSpec, create_service_app
from registry import api, api_certification, api_network
from registry.config import MIGRATIONS, Settings
from registry.contracts import MUNICIPAL_ENTERPRISE_TOPIC, PUBLISHED_TOPICS
from registry.handlers import municipal_handlers
from registry.models import outbox, processed_events


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the registry app (uvicorn --factory registry.main:create_app)."""
    settings = settings or Settings()
    # The same stager the runtime builds; handlers need it before the runtime exists.
    stager = EventStager(table=outbox, source=settings.event_source, type_prefix=settings.event_type_prefix)
    municipal = subscribe(MUNICIPAL_ENTERPRISE_TOPIC, settings.event_type_prefix, municipal_handlers(stager),
                          strict=True)
    return create_service_app(ServiceSpec(
        settings=settings,
        title="Registry service",
        description="Institutions, certified industry-education integration enterprises, bases, alliances, mentors.",
        routers=[api.router, api_certification.router, api_network.router],
        outbox=outbox,
        processed=processed_events,
        migrations=MIGRATIONS,
        published_topics=PUBLISHED_TOPICS,
        consumers=[ConsumerSpec("municipal", [municipal])],
    ))
