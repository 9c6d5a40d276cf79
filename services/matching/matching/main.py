"""The matching service: opportunities, recommendations, match lifecycle and stable placement."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from common.consumer import subscribe
from common.outbox import EventStager
from common.service import ConsumerSpec, Runtime, ServiceSpec, create_service_app
from matching import handlers, service
from matching.api import routers
from matching.config import MIGRATIONS, Settings
from matching.contracts import (
    CERTIFICATION_EVENT_NAMES,
    INSTITUTION_EVENT_NAMES,
    MUNICIPAL_TALENT_DEMAND_TOPIC,
    PUBLISHED_TOPICS,
    REGISTRY_CERTIFICATION_TOPIC,
    REGISTRY_INSTITUTION_TOPIC,
    TALENT_DEMAND_EVENT_NAMES,
)
from matching.models import outbox, processed_events
from matching.scoring import init_segmenter

log = logging.getLogger("matching")


async def _sweep_expiry(runtime: Runtime) -> None:
    """Expire due proposals and opportunities every `expiry_sweep_seconds`."""
    while True:
        await asyncio.sleep(runtime.settings.expiry_sweep_seconds)
        try:
            await service.expire_due(sessions=runtime.sessions, stager=runtime.stager)
        except Exception as exc:  # the database may be away for a while; the next sweep catches up
            log.warning("expiry sweep failed: %r", exc)


async def _on_startup(runtime: Runtime) -> None:
    """Load the Chinese segmenter once (off the event loop) and start the expiry sweeper."""
    await asyncio.to_thread(init_segmenter)
    if runtime.settings.run_workers:
        runtime.tasks.append(asyncio.create_task(_sweep_expiry(runtime), name="expiry-sweeper"))


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the matching app (uvicorn --factory matching.main:create_app)."""
    settings = settings or Settings()
    prefix = settings.event_type_prefix
    # the same stager the runtime builds (same outbox, source and type prefix), for handlers that stage events
    stager = EventStager(table=outbox, source=settings.event_source, type_prefix=settings.event_type_prefix)
    registry_feed = ConsumerSpec("registry-projection", [
        subscribe(REGISTRY_INSTITUTION_TOPIC, prefix,
                  {n: handlers.make_institution_handler(stager) for n in INSTITUTION_EVENT_NAMES}),
        subscribe(REGISTRY_CERTIFICATION_TOPIC, prefix,
                  {n: handlers.project_certification for n in CERTIFICATION_EVENT_NAMES}),
    ])
    municipal_feed = ConsumerSpec("municipal-talent-demand", [
        subscribe(MUNICIPAL_TALENT_DEMAND_TOPIC, prefix,
                  {n: handlers.make_talent_demand_handler(stager) for n in TALENT_DEMAND_EVENT_NAMES}, strict=True),
    ])

    return create_service_app(ServiceSpec(
        settings=settings,
        title="Matching service",
        description="Opportunities, explainable recommendations, match tracking and stable placement rounds.",
        routers=routers,
        outbox=outbox,
        processed=processed_events,
        migrations=MIGRATIONS,
        published_topics=PUBLISHED_TOPICS,
        consumers=[registry_feed, municipal_feed],
        on_startup=[_on_startup],
    ))
