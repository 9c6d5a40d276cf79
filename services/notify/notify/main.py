"""The notify service: in-app inbox, email, signed webhooks, SMS, templates, preferences and digests."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from common.service import ConsumerSpec, Runtime, ServiceSpec, create_service_app
from notify import handlers
from notify.api import routers
from notify.config import MIGRATIONS, Settings
from notify.contracts import PUBLISHED_TOPICS
from notify.dispatch import Clock, Dispatcher
from notify.models import outbox, processed_events


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """Build the notify app (uvicorn --factory notify.main:create_app); `clock` is injectable for tests."""
    settings = settings or Settings()
    app: FastAPI

    async def start_dispatcher(runtime: Runtime) -> None:
        dispatcher = Dispatcher(sessions=runtime.sessions, stager=runtime.stager, settings=settings, clock=clock)
        app.state.dispatcher = dispatcher
        if settings.run_workers and settings.run_dispatcher:
            runtime.tasks.append(asyncio.create_task(dispatcher.run(), name="notify-dispatcher"))

    app = create_service_app(ServiceSpec(
        settings=settings,
        title="Notify service",
        description="In-app inbox, email, signed webhooks, SMS, templates, preferences, quiet hours and digests.",
        routers=routers,
        outbox=outbox,
        processed=processed_events,
        migrations=MIGRATIONS,
        published_topics=PUBLISHED_TOPICS,
        consumers=[ConsumerSpec("notifications", handlers.subscriptions(settings.event_type_prefix,
                                                                          clock=clock))],
        on_startup=[start_dispatcher],
    ))
    return app
