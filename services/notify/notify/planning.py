"""Planning where events are consumed: a consumer batch's inbox rows are written in the consumer's own transaction.

Handlers queue what each event should tell whom (`queue_notification`); when the batch commits (the same transaction
that records the event ids in processed_events), `plan_queued` loads the recipients' preferences, profiles and
contacts once, renders each template once per distinct input, and writes every inbox row in one executemany. A
`notifications` row is written only for events that still need the dispatcher: an email, SMS or digest entry for some
recipient, or a matching webhook subscription (only then is the full CloudEvent kept, as the webhook's body).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import String, any_, insert, literal, select
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from common import tracing
from common.db import utcnow
from common.events import CloudEvent
from notify import templates
from notify.clock import Clock
from notify.domain import CATEGORIES, RULES, Category, Channel, channels_for, inbox_digested, matches
from notify.models import (
    DigestEntry,
    InboxMessage,
    InstitutionContact,
    Notification,
    Preference,
    RecipientProfile,
    TemplateOverride,
    WebhookSubscription,
    new_id,
)
from notify.sql import insert_ignore_sync, run_pending_upserts

log = logging.getLogger("notify.planning")

NEW_NOTIFICATIONS = "notify_new_notifications"
PENDING_NOTIFICATIONS = "notify_pending_notifications"
CHUNK = 5000


# --- recipients and rendering (shared with the dispatcher) ---------------------------------------------------------

class Recipients:
    """Everything planning needs to know about a set of recipients, loaded in a few queries."""

    def __init__(self, prefs, profiles, contacts) -> None:
        self.prefs: dict[str, dict[tuple[str, str], bool]] = prefs
        self.profiles: dict[str, RecipientProfile] = profiles
        self.contacts: dict[str, InstitutionContact] = contacts

    @classmethod
    def load_sync(cls, session: Session, recipients: set[str]) -> Recipients:
        """Preferences, profiles and institution contacts of these recipients (on a sync session)."""
        names = sorted(recipients)
        prefs: dict[str, dict[tuple[str, str], bool]] = defaultdict(dict)
        profiles: dict[str, RecipientProfile] = {}
        contacts: dict[str, InstitutionContact] = {}
        inst = [r.removeprefix("institution:") for r in names if r.startswith("institution:")]
        for i in range(0, len(names), CHUNK):
            part = names[i:i + CHUNK]
            for p in session.execute(select(Preference).where(_among(Preference.recipient, part))).scalars():
                prefs[p.recipient][(p.category, p.channel)] = p.enabled
            for p in session.execute(
                    select(RecipientProfile).where(_among(RecipientProfile.recipient, part))).scalars():
                profiles[p.recipient] = p
        for i in range(0, len(inst), CHUNK):
            part = inst[i:i + CHUNK]
            for ct in session.execute(
                    select(InstitutionContact).where(_among(InstitutionContact.institution_id, part))).scalars():
                contacts[f"institution:{ct.institution_id}"] = ct
        return cls(prefs, profiles, contacts)

    @classmethod
    async def load(cls, session: AsyncSession, recipients: set[str]) -> Recipients:
        """Preferences, profiles and institution contacts of these recipients."""
        return await session.run_sync(cls.load_sync, recipients)

    def locale(self, r: str) -> str:
        """The recipient's language (zh-CN unless they chose English)."""
        p = self.profiles.get(r)
        return p.locale if p and p.locale in templates.LOCALES else templates.DEFAULT_LOCALE

    def email(self, r: str) -> str | None:
        """Their own address first, else the institution contact's."""
        p, ct = self.profiles.get(r), self.contacts.get(r)
        return (p.email if p and p.email else None) or (ct.contact_email if ct else None)

    def phone(self, r: str) -> str | None:
        """Their own mobile number first, else the institution contact's."""
        p, ct = self.profiles.get(r), self.contacts.get(r)
        return (p.phone if p and p.phone else None) or (ct.contact_phone if ct else None)

    def channels(self, cat: Category, r: str) -> set[Channel]:
        """The person-facing channels this recipient gets for a category (a public feed only has an inbox)."""
        if r.startswith("public:"):
            return {Channel.INBOX}
        return channels_for(cat, self.prefs.get(r, {}))

    def inbox_digested(self, cat: Category, r: str) -> bool:
        """Whether this recipient's inbox items of the category wait for a digest (a public feed never does)."""
        return not r.startswith("public:") and inbox_digested(cat, self.prefs.get(r, {}))[0]

    def needs_sending(self, cat: Category, r: str, chans: set[Channel] | None = None) -> bool:
        """Whether the dispatcher has an email, SMS or digest entry to plan for this recipient."""
        chans = self.channels(cat, r) if chans is None else chans
        return bool((Channel.EMAIL in chans and self.email(r)) or (Channel.SMS in chans and self.phone(r)))


def _among(column, values: list[str]):
    """`column = ANY(values)`: one array parameter, so the statement stays the same whatever the count."""
    return column == any_(literal(values, ARRAY(String)))


def category_of(name: str) -> Category:
    """The category a notification of this kind belongs to (registry if unknown)."""
    return CATEGORIES.get(name) or CATEGORIES["registry"]


def render_for(event_name: str, locale: str, context: dict, overrides: dict) -> templates.Rendered:
    """Render an event's message: an administrator's override first, then the built-in template, else a fallback."""
    source = overrides.get((event_name, locale)) or overrides.get((event_name, templates.DEFAULT_LOCALE)) \
        or templates.builtin(event_name, locale)
    if source is None:
        return templates.fallback(event_name, context)
    try:
        return templates.render(source, context)
    except templates.TemplateInvalid as exc:
        log.warning("template for %s/%s failed (%s); using the plain fallback", event_name, locale, exc)
        return templates.fallback(event_name, context)


def load_overrides(session: Session) -> dict[tuple[str, str], tuple[str, str]]:
    """Administrators' template overrides by (event name, locale)."""
    t = TemplateOverride.__table__
    return {(e, lo): (ti, b) for e, lo, ti, b in session.execute(select(t.c.event, t.c.locale, t.c.title, t.c.body))}


def inbox_digest_row(*, recipient: str, cat: Category, msg: templates.Rendered, event_id: str,
                     now: datetime) -> dict[str, Any]:
    """One digest_entries row for an inbox item that waits for the recipient's next inbox digest."""
    return {"id": new_id(), "recipient": recipient, "channel": Channel.INBOX.value, "event_id": event_id,
            "category": cat.name, "title": msg.title, "body": msg.body, "created_at": now, "digest_delivery_id": None}


def inbox_row(*, notification_id: str | None, recipient: str, cat: Category, msg: templates.Rendered, event_id: str,
              event_type: str, subject: str | None, data: Any, now: datetime) -> dict[str, Any]:
    """One inbox_messages row."""
    return {"id": new_id(), "notification_id": notification_id, "recipient": recipient, "category": cat.name,
            "priority": cat.priority.value, "title": msg.title, "body": msg.body, "event_id": event_id,
            "event_type": event_type, "subject": subject, "data": data or {}, "created_at": now, "read_at": None,
            "archived_at": None}


# --- queued by handlers, planned at commit --------------------------------------------------------------------------

@dataclass
class Pending:
    """What one consumed event should tell whom."""

    event: CloudEvent
    name: str
    recipients: list[str]
    context: dict[str, Any]


@dataclass
class PendingBatch:
    """The notifications queued in one consumer transaction."""

    clock: Clock
    items: list[Pending] = field(default_factory=list)


def queue_notification(session: AsyncSession | Session, clock: Clock, event: CloudEvent, name: str,
                       recipients: list[str], extra: dict[str, Any] | None = None) -> Pending:
    """Queue the notification for a consumed event; its inbox rows are written when the transaction commits."""
    context = {"data": event.data, "activity": {}, "results": [],
               "event": {"name": name, "type": event.type, "subject": event.subject, "time": event.time.isoformat()}}
    if extra:
        context.update(extra)
    trace = tracing.current_context()  # the consumer span's: the dispatcher's deliveries continue its trace
    if trace:
        context[tracing.TRACE] = dict(trace)
    seen: set[str] = set()
    unique = [r for r in recipients if r and not (r in seen or seen.add(r))]
    pending = Pending(event=event, name=name, recipients=unique, context=context)
    batch = session.info.get(PENDING_NOTIFICATIONS)
    if batch is None:
        batch = session.info[PENDING_NOTIFICATIONS] = PendingBatch(clock)
    batch.items.append(pending)
    return pending


def plan_queued(session: Session, batch: PendingBatch) -> None:
    """Write the batch's inbox rows, and a notification row for each event the dispatcher must still send."""
    run_pending_upserts(session)  # projections first (a contact's address decides whether email is planned)
    who = Recipients.load_sync(session, {r for p in batch.items for r in p.recipients})
    subs = list(session.execute(select(WebhookSubscription).where(WebhookSubscription.active.is_(True))).scalars())
    overrides = load_overrides(session)
    now, created = batch.clock.now(), utcnow()
    inbox: list[dict[str, Any]] = []
    digests: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    for p in batch.items:
        ev = p.event
        cat = category_of(RULES[p.name].category_for(p.context.get("data")))
        nid = new_id()
        rendered: dict[str, templates.Rendered] = {}
        to_send: list[str] = []
        for r in p.recipients:
            chans = who.channels(cat, r)
            if Channel.INBOX in chans:
                locale = who.locale(r)
                msg = rendered.get(locale)
                if msg is None:
                    msg = rendered[locale] = render_for(p.name, locale, p.context, overrides)
                if who.inbox_digested(cat, r):
                    digests.append(inbox_digest_row(recipient=r, cat=cat, msg=msg, event_id=ev.id, now=now))
                else:
                    inbox.append(inbox_row(notification_id=nid, recipient=r, cat=cat, msg=msg, event_id=ev.id,
                                           event_type=ev.type, subject=ev.subject, data=p.context.get("data"),
                                           now=now))
            if who.needs_sending(cat, r, chans):
                to_send.append(r)
        hooked = any(matches(s.events, p.name) for s in subs)
        if to_send or hooked:
            notes.append({
                "id": nid, "event_id": ev.id, "event_type": ev.type, "event_name": p.name, "category": cat.name,
                "subject": ev.subject, "context": p.context, "recipients": to_send,
                "envelope": ev.model_dump(mode="json", exclude_none=True) if hooked else {},
                "created_at": created, "planned_at": None,
            })
    insert_ignore_sync(session, InboxMessage.__table__, inbox)
    insert_ignore_sync(session, DigestEntry.__table__, digests)
    if notes:
        session.execute(insert(Notification.__table__), notes)
        session.info[NEW_NOTIFICATIONS] = True


@sa_event.listens_for(Session, "before_commit")
def _plan_at_commit(session: Session) -> None:
    batch = session.info.pop(PENDING_NOTIFICATIONS, None)
    if batch is not None and batch.items:
        plan_queued(session, batch)  # a sync call inside the async session's greenlet, as SQLAlchemy allows


@sa_event.listens_for(Session, "after_rollback")
def _forget_queued(session: Session) -> None:
    session.info.pop(PENDING_NOTIFICATIONS, None)
