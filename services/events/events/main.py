"""The events service: conferences, exhibitions, job fairs, training camps and skills competitions."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from common.consumer import subscribe
from common.service import ConsumerSpec, Runtime, ServiceSpec, create_service_app
from events import handlers, service
from events.api import router
from events.clock import Clock
from events.competition_api import router as competition_router
from events.config import MIGRATIONS, Settings
from events.contracts import (
    PUBLISHED_TOPICS,
    REGISTRY_ALLIANCE_TOPIC,
    REGISTRY_INSTITUTION_TOPIC,
    REGISTRY_MENTOR_TOPIC,
)
from events.models import outbox, processed_events

log = logging.getLogger("events.offers")

INSTITUTION_TYPES = ("registered", "updated", "status_changed", "merged")
ALLIANCE_TYPES = ("formed", "updated", "member_joined", "member_left", "dissolved")
MENTOR_TYPES = ("listed", "updated", "unlisted")


def offer_expiry_worker(settings: Settings, clock: Clock):
    """A startup hook that runs the offer-expiry loop as one of the runtime's tasks (stopped with the service)."""

    async def loop(runtime: Runtime) -> None:
        while True:
            try:
                n = await service.expire_offers(sessions=runtime.sessions, stager=runtime.stager, now=clock.now(),
                                                default_ttl=settings.offer_ttl_seconds)
                if n:
                    log.info("expired %d waitlist offers", n)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away for a moment; the next sweep retries
                log.exception("offer expiry sweep failed")
            await asyncio.sleep(settings.offer_sweep_seconds)

    async def start(runtime: Runtime) -> None:
        if settings.run_workers:
            runtime.tasks.append(asyncio.create_task(loop(runtime), name="offer-expiry"))

    return start


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the events app (uvicorn --factory events.main:create_app)."""
    settings = settings or Settings()
    prefix = settings.event_type_prefix
    clock = Clock()
    registry_feed = ConsumerSpec("registry-projection", [
        subscribe(REGISTRY_INSTITUTION_TOPIC, prefix,
                  {f"registry.institution.{t}": handlers.project_institution for t in INSTITUTION_TYPES}),
        subscribe(REGISTRY_ALLIANCE_TOPIC, prefix,
                  {f"registry.alliance.{t}": handlers.project_alliance for t in ALLIANCE_TYPES}),
        subscribe(REGISTRY_MENTOR_TOPIC, prefix,
                  {f"registry.mentor.{t}": handlers.project_mentor for t in MENTOR_TYPES}),
    ])
    app = create_service_app(ServiceSpec(
        settings=settings,
        title="Events service",
        description="Activities and competitions: registration, waitlists, check-in, teams, judging, results.",
        routers=[router, competition_router],
        outbox=outbox,
        processed=processed_events,
        migrations=MIGRATIONS,
        published_topics=PUBLISHED_TOPICS,
        consumers=[registry_feed],
        on_startup=[offer_expiry_worker(settings, clock)],
    ))
    app.state.clock = clock
    return app
