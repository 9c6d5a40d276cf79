"""What notify does with each consumed event: keep its projections, and queue the notification its rule asks for.

Handlers stay cheap: projection upserts are deferred to one statement per batch, and notifications are queued and
planned when the consumer's batch commits (`notify.planning`): inbox rows in that same transaction, and a
notifications row for the dispatcher only when email, SMS, a digest or a webhook is due.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.consumer import Handler, Subscription, parse_payload, subscribe
from common.events import CloudEvent
from notify import contracts as c
from notify.clock import Clock
from notify.domain import PUBLIC_CERTIFICATION_EVENTS, RULES, registration_is_active
from notify.models import ActivityView, InstitutionContact, RegistrationView
from notify.planning import NEW_NOTIFICATIONS, queue_notification
from notify.sql import defer_upsert, flush_upserts

__all__ = ["NEW_NOTIFICATIONS", "subscriptions"]

Recipients = Callable[[AsyncSession, Any, CloudEvent], Awaitable[list[str]]]


parse = parse_payload  # validate a consumed payload; what can never be applied is dead-lettered


# --- recipients per producer ---------------------------------------------------------------------------------------

async def _institution(session, data: c.RegistryInstitution, event, name) -> list[str]:
    if name.endswith(".registered"):
        return [c.OFFICE_INBOX]
    return [c.OFFICE_INBOX, c.institution_inbox(data.id)]


async def _certification(session, data: c.RegistryCertification, event, name) -> list[str]:
    out = [c.institution_inbox(data.institution_id)]
    if name in PUBLIC_CERTIFICATION_EVENTS:
        out.append(c.PUBLIC_CERTIFICATION_FEED)
    return out


async def _match(session, data: c.MatchingMatch, event, name) -> list[str]:
    return [c.institution_inbox(data.from_institution_id), c.institution_inbox(data.to_institution_id)]


async def _placement(session, data: c.MatchingPlacement, event, name) -> list[str]:
    return [data.participant_id]


async def _competition(session, data: c.EventsCompetition, event, name) -> list[str]:
    return sorted({c.institution_inbox(r.institution_id) for r in data.results if r.institution_id})


async def _registration(session, data: c.EventsRegistration, event, name) -> list[str]:
    return [data.participant_id]


async def _cancellation(session, data: c.EventsActivity, event, name) -> list[str]:
    await flush_upserts(session)
    rows = (await session.execute(
        select(RegistrationView.participant_id, RegistrationView.status)
        .where(RegistrationView.activity_id == data.id)
    )).all()
    people = sorted({p for p, status in rows if registration_is_active(status)})
    return people + ([c.institution_inbox(data.organiser_id)] if data.organiser_id else [])


# --- projections ---------------------------------------------------------------------------------------------------

async def project_contact(session: AsyncSession, event: CloudEvent) -> None:
    """Keep the institution's contact (where its email and SMS go); older versions never win."""
    data = parse(c.RegistryContact, event, "registry contact")
    defer_upsert(session, InstitutionContact.__table__, data.model_dump(), key=["institution_id"])


async def _project_activity(session: AsyncSession, data: c.EventsActivity) -> None:
    defer_upsert(session, ActivityView.__table__, {
        "id": data.id, "title_zh": data.title_zh, "organiser_id": data.organiser_id, "starts_at": data.starts_at,
        "status": data.status, "version": data.version,
    }, key=["id"])


async def _project_registration(session: AsyncSession, data: c.EventsRegistration) -> None:
    defer_upsert(session, RegistrationView.__table__, {
        "id": data.id, "activity_id": data.activity_id, "participant_id": data.participant_id,
        "institution_id": data.institution_id, "status": data.status, "version": data.version,
    }, key=["id"])


def _handler(clock: Clock, name: str, model: type[BaseModel], recipients: Recipients | None,
             project: Callable[[AsyncSession, Any], Awaitable[None]] | None = None) -> Handler:
    """A handler for one event name: validate, project, then queue the notification its rule asks for."""

    async def handle(session: AsyncSession, event: CloudEvent) -> None:
        data = parse(model, event, name)
        if project is not None:
            await project(session, data)
        if recipients is None or name not in RULES:
            return
        extra: dict[str, Any] = {}
        if isinstance(data, c.EventsRegistration) and not data.activity_title:
            await flush_upserts(session)
            act = await session.get(ActivityView, data.activity_id)
            if act is not None:
                extra["activity"] = {"title_zh": act.title_zh, "starts_at": act.starts_at.isoformat()
                                     if act.starts_at else None}
        if isinstance(data, c.EventsCompetition):
            extra["results"] = [r.model_dump() for r in data.results]
        queue_notification(session, clock, event, name, await recipients(session, data, event, name), extra)

    handle.__doc__ = f"Handle {name}: project what notify keeps, then notify whom its rule names."
    return handle


def _names(prefix: str, *statuses: str) -> list[str]:
    return [f"{prefix}.{s}" for s in statuses]


def subscriptions(type_prefix: str, *, clock: Clock | None = None) -> list[Subscription]:
    """Every topic notify consumes, with a handler per event name it cares about (`clock` stamps inbox rows)."""
    h = partial(_handler, clock or Clock())
    table: dict[str, dict[str, Handler]] = {
        c.REGISTRY_INSTITUTION_TOPIC: {
            n: h(n, c.RegistryInstitution, _institution)
            for n in _names("registry.institution", "registered", "status_changed")
        },
        c.REGISTRY_CONTACT_TOPIC: {"registry.contact.updated": project_contact},
        c.REGISTRY_CERTIFICATION_TOPIC: {
            n: h(n, c.RegistryCertification, _certification)
            for n in _names("registry.certification", "applied", "reviewed", "certified", "announced",
                            "objection_raised", "evaluated", "rectification_required", "withdrawn", "revoked")
        },
        c.EVENTS_ACTIVITY_TOPIC: {
            n: h(n, c.EventsActivity, _cancellation if n.endswith(".cancelled") else None, _project_activity)
            for n in _names("events.activity", "created", "published", "registration_opened",
                            "registration_closed", "started", "finished", "archived", "cancelled")
        },
        c.EVENTS_REGISTRATION_TOPIC: {
            n: h(n, c.EventsRegistration, _registration, _project_registration)
            for n in _names("events.registration", "confirmed", "waitlisted", "offer_made", "offer_expired",
                            "promoted", "withdrawn", "checked_in")
        },
        c.EVENTS_COMPETITION_TOPIC: {
            "events.competition.results_published": h(
                "events.competition.results_published", c.EventsCompetition, _competition),
        },
        c.MATCHING_MATCH_TOPIC: {
            n: h(n, c.MatchingMatch, _match)
            for n in _names("matching.match", "proposed", "accepted", "declined", "expired", "agreed", "started",
                            "completed", "cancelled")
        },
        c.MATCHING_PLACEMENT_TOPIC: {
            n: h(n, c.MatchingPlacement, _placement)
            for n in _names("matching.placement", "assigned", "unplaced")
        },
    }
    return [subscribe(topic, type_prefix, handlers) for topic, handlers in table.items()]
