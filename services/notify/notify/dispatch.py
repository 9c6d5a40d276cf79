"""The dispatcher: plans notifications into deliveries and digests, and sends deliveries with retries.

Inbox rows are written by the consumer when it commits (`notify.planning`); the dispatcher only sees the events that
need email, SMS, a digest or a webhook (re-planning an inbox row it finds already written is a no-op).

At most once per (event id, recipient, channel): unique constraints make planning idempotent, and a delivery is
claimed (status `sending`, committed) before its send. A claim left behind by a process that died mid-send is never
sent again automatically (the outcome is unknown): it becomes `dead` with that reason, and an administrator may replay.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from common import tracing
from common.metrics import NOTIFY_DELIVERIES, NOTIFY_DELIVERY_LATENCY
from common.outbox import EventStager
from notify import templates
from notify.channels import EmailChannel, SmsChannel, WebhookChannel, address_problem
from notify.clock import Clock, FakeClock  # noqa: F401 (FakeClock: tests import it from here)
from notify.config import Settings
from notify.contracts import DELIVERY_CONTRACTS, DeliveryPayload
from notify.domain import (
    CATEGORIES,
    SHANGHAI,
    Category,
    Channel,
    Outcome,
    Status,
    after_attempt,
    delayed_by_quiet_hours,
    matches,
    parse_hhmm,
    quiet_release,
    retry_delay,
)
from notify.models import (
    Delivery,
    DigestEntry,
    InboxMessage,
    Notification,
    RecipientProfile,
    WebhookSubscription,
    new_id,
)
from notify.planning import (
    NEW_NOTIFICATIONS,
    Recipients,
    category_of,
    inbox_digest_row,
    inbox_row,
    load_overrides,
    render_for,
)
from notify.sql import insert_ignore, insert_ignore_returning

log = logging.getLogger("notify.dispatch")

_live: weakref.WeakSet = weakref.WeakSet()


@sa_event.listens_for(Session, "after_commit")
def _wake_dispatchers(session: Session) -> None:
    if session.info.pop(NEW_NOTIFICATIONS, False):
        for d in list(_live):
            d.wake()


@sa_event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(NEW_NOTIFICATIONS, None)


def delivery_payload(d: Delivery) -> DeliveryPayload:
    """The public event payload of a delivery."""
    return DeliveryPayload(id=d.id, notification_id=d.notification_id, event_id=d.event_id, recipient=d.recipient,
                           channel=d.channel, status=d.status, reason=d.reason, attempts=d.attempts,
                           version=d.version)


async def stage_delivery(session: AsyncSession, stager: EventStager, d: Delivery) -> None:
    """Publish a delivery's new status on notify.delivery.v1 (through the outbox, in the caller's transaction)."""
    contract = DELIVERY_CONTRACTS.get(d.status)
    if contract is not None:
        with tracing.resumed(d.payload.get(tracing.TRACE)):  # the event joins the trace of what caused the delivery
            await stager.stage(session, contract, key=d.id, payload=delivery_payload(d))


def delivery_attributes(d: Delivery) -> dict[str, Any]:
    """What a delivery attempt's span records (never the address or the content: personal data)."""
    return {"cjrh.delivery.id": d.id, "cjrh.delivery.channel": d.channel, "cjrh.delivery.attempt": d.attempts,
            "cjrh.event_id": d.event_id, "cjrh.notification.category": d.category}


def sms_params(msg: templates.Rendered, data: dict) -> dict[str, str]:
    """The provider template's parameters: the title, and the deadline when the message asks for an answer by one
    (a seat offer must be accepted before it expires)."""
    params = {"title": msg.title[:35]}
    if data.get("offer_expires_at"):
        params["deadline"] = templates.sh_time(data["offer_expires_at"])
    return params


def count_outcome(channel: str, outcome: str, n: int = 1) -> None:
    """Count delivery outcomes (sent, delivered, deferred, failed, dead) by channel, for /metrics."""
    if n:
        NOTIFY_DELIVERIES.labels("notify", channel, outcome).inc(n)


def wake_after_commit(session: AsyncSession) -> None:
    """Ask the dispatchers to look for work once the caller's transaction commits."""
    session.info[NEW_NOTIFICATIONS] = True


def http_client(settings: Settings) -> httpx.AsyncClient:
    """The client of the webhook and SMS channels: no redirects followed, through NOTIFY_HTTP_PROXY when set."""
    return httpx.AsyncClient(follow_redirects=False, proxy=settings.http_proxy or None)


def quiet_window(settings: Settings, profile: RecipientProfile | None):
    """The (start, end) quiet hours that apply to a recipient, or None when they switched them off."""
    if profile is not None and not profile.quiet_enabled:
        return None
    start = profile.quiet_start if profile and profile.quiet_start else settings.quiet_start
    end = profile.quiet_end if profile and profile.quiet_end else settings.quiet_end
    return parse_hhmm(start), parse_hhmm(end)


def not_before(settings: Settings, category: Category, channel: Channel, profile, at: datetime) -> datetime:
    """When a delivery may go: `at`, or the end of the recipient's quiet hours for non-critical email and SMS."""
    if not delayed_by_quiet_hours(category, channel):
        return at
    window = quiet_window(settings, profile)
    if window is None:
        return at
    return quiet_release(at, *window) or at


class Dispatcher:
    """The background task of the notify service (one per process; several processes share work safely)."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], stager: EventStager, settings: Settings,
                 clock: Clock | None = None) -> None:
        self.sessions = sessions
        self.stager = stager
        self.s = settings
        self.clock = clock or Clock()
        self.instance = f"dispatcher-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._stopping = False
        self._housekeeping_at = 0.0
        self.client: httpx.AsyncClient | None = None
        self.email = EmailChannel(settings)
        _live.add(self)

    def wake(self) -> None:
        """Look for work now rather than at the next interval."""
        self._wake.set()

    async def run(self) -> None:
        """Loop until cancelled: plan, flush digests, recover interrupted sends, send what is due."""
        self.client = http_client(self.s)
        try:
            failures = 0
            while not self._stopping:
                self._wake.clear()
                try:
                    busy = await self.tick()
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # database away: keep going, nothing is lost (all state is in rows)
                    failures += 1
                    log.warning("dispatcher tick failed: %r", exc)
                    await asyncio.sleep(min(5.0, 0.2 * 2 ** min(failures, 5)))
                    continue
                if busy:
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.s.dispatch_interval_seconds)
                except TimeoutError:
                    pass
        finally:
            await self.client.aclose()

    async def tick(self) -> bool:
        """One round of work; True when a full batch came back (so more may be waiting)."""
        planned = await self.plan_pending()
        if time.monotonic() >= self._housekeeping_at:  # digests wait an hour and leases minutes: no need to poll
            self._housekeeping_at = time.monotonic() + self.s.housekeeping_interval_seconds
            await self.flush_digests()
            await self.recover_interrupted()
        sent = await self.send_due()
        return planned >= self.s.plan_batch_size or sent >= self.s.dispatch_batch_size

    # --- planning -------------------------------------------------------------------------------------------------

    async def plan_pending(self) -> int:
        """Turn unplanned notifications into inbox rows, deliveries and digest entries, once each."""
        async with self.sessions() as session, session.begin():
            q = (select(Notification).where(Notification.planned_at.is_(None))
                 .order_by(Notification.created_at).limit(self.s.plan_batch_size)).with_for_update(skip_locked=True)
            notes = list((await session.execute(q)).scalars())
            if not notes:
                return 0
            who = await Recipients.load(session, {r for n in notes for r in n.recipients})
            subs = list((await session.execute(
                select(WebhookSubscription).where(WebhookSubscription.active.is_(True)))).scalars())
            overrides = await session.run_sync(load_overrides)
            now = self.clock.now()
            inbox, digests, deliveries = [], [], []
            for n in notes:
                self._plan_one(n, who, subs, overrides, now, inbox, digests, deliveries)
                n.planned_at = now
            await insert_ignore(session, InboxMessage.__table__, inbox)
            await insert_ignore(session, DigestEntry.__table__, digests)
            inserted = set(await insert_ignore_returning(session, Delivery.__table__, deliveries))
            outcomes: list[tuple[str, str]] = []
            for row in deliveries:
                if row["id"] in inserted:
                    await stage_delivery(session, self.stager, Delivery(**row))
                    if row["status"] == Status.DEAD.value:
                        outcomes.append((row["channel"], "dead"))
                    elif row["next_attempt_at"] > now:
                        outcomes.append((row["channel"], "deferred"))
            if inserted:
                wake_after_commit(session)
        for channel, outcome in outcomes:  # counted once the rows are committed
            count_outcome(channel, outcome)
        return len(notes)

    def _plan_one(self, n: Notification, who: Recipients, subs, overrides, now: datetime,
                  inbox: list, digests: list, deliveries: list) -> None:
        cat = category_of(n.category)
        rendered: dict[str, templates.Rendered] = {}

        def text(locale: str) -> templates.Rendered:
            if locale not in rendered:
                rendered[locale] = render_for(n.event_name, locale, n.context, overrides)
            return rendered[locale]

        for r in n.recipients:  # the consumer wrote most inbox rows already; re-planning them is a no-op
            chans = who.channels(cat, r)
            msg = text(who.locale(r))
            if Channel.INBOX in chans and who.inbox_digested(cat, r):
                digests.append(inbox_digest_row(recipient=r, cat=cat, msg=msg, event_id=n.event_id, now=now))
            elif Channel.INBOX in chans:
                inbox.append(inbox_row(notification_id=n.id, recipient=r, cat=cat, msg=msg, event_id=n.event_id,
                                       event_type=n.event_type, subject=n.subject, data=n.context.get("data"),
                                       now=now))
            profile = who.profiles.get(r)
            email = who.email(r)
            if Channel.EMAIL in chans and email:
                if cat.digested:
                    digests.append({"id": new_id(), "recipient": r, "channel": "email", "event_id": n.event_id,
                                    "category": cat.name, "title": msg.title, "body": msg.body, "created_at": now,
                                    "digest_delivery_id": None})
                else:
                    deliveries.append(self._delivery_row(n, r, Channel.EMAIL, email, cat, profile, msg, {}, now))
            phone = who.phone(r)
            if Channel.SMS in chans and phone:
                code = self.s.sms_template_codes.get(cat.name, "")
                payload = {"sign_name": self.s.sms_sign_name, "template_code": code,
                           "params": sms_params(msg, n.context.get("data") or {})}
                deliveries.append(self._delivery_row(n, r, Channel.SMS, phone, cat, profile, msg, payload, now))
        for sub in subs:
            if matches(sub.events, n.event_name):
                payload = {"subscription_id": sub.id, "event": n.envelope}
                deliveries.append(self._delivery_row(n, f"webhook:{sub.id}", Channel.WEBHOOK, sub.url, cat, None,
                                                     templates.Rendered(n.event_name, ""), payload, now))

    def _delivery_row(self, n: Notification | None, recipient: str, channel: Channel, address: str, cat: Category,
                      profile, msg: templates.Rendered, payload: dict, now: datetime, *,
                      event_id: str | None = None) -> dict[str, Any]:
        due = not_before(self.s, cat, channel, profile, now)
        if n is not None and n.context.get(tracing.TRACE):
            payload = {**payload, tracing.TRACE: n.context[tracing.TRACE]}
        status, reason = Status.QUEUED, None
        undeliverable = address_problem(channel, address)
        if undeliverable:  # no attempt can ever succeed: dead at once, saying why, instead of retried to death
            status, reason, due = Status.DEAD, f"undeliverable address: {undeliverable}", now
        elif due > now:
            reason = f"held by quiet hours until {due.astimezone(SHANGHAI):%Y-%m-%d %H:%M} Asia/Shanghai"
        return {
            "id": new_id(), "notification_id": n.id if n else None, "event_id": event_id or n.event_id,
            "recipient": recipient, "channel": channel.value, "category": cat.name, "address": address[:500],
            "subject": msg.title, "body": msg.body, "payload": payload, "status": status.value,
            "reason": reason, "attempts": 0, "replays": 0, "provider_id": None, "next_attempt_at": due,
            "claimed_at": None, "claimed_by": None, "created_at": now, "updated_at": now, "version": 1,
        }

    # --- digests --------------------------------------------------------------------------------------------------

    async def flush_digests(self) -> int:
        """Once the oldest of a recipient's waiting items has waited a full window, batch them: low-priority email
        into one email, platform chatter bound for the inbox into one inbox message."""
        now = self.clock.now()
        cutoff = now - timedelta(seconds=self.s.digest_window_seconds)
        made = dead = 0
        async with self.sessions() as session, session.begin():
            due = (await session.execute(
                select(DigestEntry.recipient, DigestEntry.channel).where(DigestEntry.digest_delivery_id.is_(None))
                .group_by(DigestEntry.recipient, DigestEntry.channel)
                .having(func.min(DigestEntry.created_at) <= cutoff).limit(500)
            )).all()
            if not due:
                return 0
            who = await Recipients.load(session, {r for r, _ in due})
            cat = CATEGORIES["progress"]
            for r, channel in due:
                q = (select(DigestEntry).where(DigestEntry.recipient == r, DigestEntry.channel == channel,
                                               DigestEntry.digest_delivery_id.is_(None))
                     .order_by(DigestEntry.created_at, DigestEntry.id)).with_for_update(skip_locked=True)
                entries = list((await session.execute(q)).scalars())
                if not entries:
                    continue
                items = [{"title": e.title, "body": e.body, "category": e.category} for e in entries]
                if channel == Channel.INBOX.value:
                    await self._inbox_digest(session, r, entries, items, who.locale(r), now)
                    made += 1
                    continue
                msg = templates.render(templates.DIGEST[who.locale(r)], {"items": items})
                row = self._delivery_row(None, r, Channel.EMAIL, who.email(r) or "", cat, who.profiles.get(r), msg,
                                         {"items": len(items)}, now, event_id=f"digest:{entries[0].id}")
                if not row["address"]:
                    row.update(status=Status.DEAD.value, reason="recipient has no email address any more")
                [got] = await insert_ignore_returning(session, Delivery.__table__, [row]) or [None]
                if got is None:
                    continue
                for e in entries:
                    e.digest_delivery_id = got
                await stage_delivery(session, self.stager, Delivery(**row))
                made += 1
                if row["status"] == Status.DEAD.value:
                    dead += 1
        count_outcome(Channel.EMAIL.value, "dead", dead)
        return made

    async def _inbox_digest(self, session: AsyncSession, recipient: str, entries: list[DigestEntry],
                            items: list[dict], locale: str, now: datetime) -> None:
        """One inbox message listing a window's chatter (each item's event id kept in its data)."""
        msg = templates.render(templates.INBOX_DIGEST[locale], {"items": items})
        row = inbox_row(notification_id=None, recipient=recipient, cat=category_of(entries[0].category), msg=msg,
                        event_id=f"digest:{entries[0].id}", event_type="digest", subject=None,
                        data={"items": [{"event_id": e.event_id, "title": e.title, "category": e.category,
                                         "created_at": e.created_at.isoformat()} for e in entries]}, now=now)
        await insert_ignore(session, InboxMessage.__table__, [row])
        for e in entries:
            e.digest_delivery_id = row["id"]

    # --- sending --------------------------------------------------------------------------------------------------

    async def recover_interrupted(self) -> int:
        """Claims left by a dispatcher that died mid-send: outcome unknown, so never resent automatically."""
        cutoff = self.clock.now() - timedelta(seconds=self.s.send_lease_seconds)
        async with self.sessions() as session, session.begin():
            rows = list((await session.execute(
                select(Delivery).where(Delivery.status == Status.SENDING.value, Delivery.claimed_by != self.instance,
                                       Delivery.claimed_at <= cutoff).limit(500)
            )).scalars())
            for d in rows:
                d.status = Status.DEAD.value
                d.reason = (f"interrupted mid-send ({d.claimed_by} stopped during attempt {d.attempts}); the outcome "
                            "is unknown, so it is not resent automatically (at most once); an administrator may "
                            "replay it")
                d.version += 1
                d.updated_at = self.clock.now()
                await stage_delivery(session, self.stager, d)
        for d in rows:
            count_outcome(d.channel, "dead")
        return len(rows)

    async def send_due(self) -> int:
        """Claim due deliveries, send them concurrently, and record each outcome with its event."""
        now = self.clock.now()
        async with self.sessions() as session, session.begin():
            q = (select(Delivery).where(Delivery.status.in_([Status.QUEUED.value, Status.FAILED.value]),
                                        Delivery.next_attempt_at <= now)
                 .order_by(Delivery.next_attempt_at).limit(self.s.dispatch_batch_size)).with_for_update(skip_locked=True)
            claimed = list((await session.execute(q)).scalars())
            for d in claimed:
                d.status = Status.SENDING.value
                d.attempts += 1
                d.claimed_at = now
                d.claimed_by = self.instance
            sub_ids = {d.payload.get("subscription_id") for d in claimed if d.channel == Channel.WEBHOOK}
            subs = {s.id: s for s in (await session.execute(
                select(WebhookSubscription).where(WebhookSubscription.id.in_(sub_ids)))).scalars()} if sub_ids else {}
        if not claimed:
            return 0
        gate = asyncio.Semaphore(self.s.dispatch_concurrency)

        async def one(d: Delivery) -> Outcome:
            async with gate:
                with tracing.span(self.s.service_name, f"deliver {d.channel}", carrier=d.payload.get(tracing.TRACE),
                                  kind=tracing.SpanKind.CLIENT, attributes=delivery_attributes(d)) as span:
                    outcome = await self._attempt(d, subs)
                    if not outcome.ok:
                        tracing.failed(span, outcome.reason)
                    return outcome

        outcomes = await asyncio.gather(*(one(d) for d in claimed))
        await self._record(list(zip(claimed, outcomes)))
        return len(claimed)

    async def _attempt(self, d: Delivery, subs: dict[str, WebhookSubscription]) -> Outcome:
        try:
            return await asyncio.wait_for(self._send(d, subs), timeout=self.s.send_timeout_seconds + 5)
        except TimeoutError:
            return Outcome(False, reason="send timed out")
        except Exception as exc:  # an adapter bug must not leave the claim unrecorded
            log.exception("delivery %s: send raised", d.id)
            return Outcome(False, reason=f"send raised {exc!r}"[:500])

    async def _send(self, d: Delivery, subs: dict[str, WebhookSubscription]) -> Outcome:
        if d.channel == Channel.EMAIL:
            return await self.email.send(d)
        if d.channel == Channel.WEBHOOK:
            return await WebhookChannel(self.s, self.client).send(d, subs.get(d.payload.get("subscription_id")))
        if d.channel == Channel.SMS:
            return await SmsChannel(self.s, self.client).send(d)
        return Outcome(False, reason=f"unknown channel {d.channel!r}", permanent=True)

    async def _record(self, results: list[tuple[Delivery, Outcome]]) -> None:
        now = self.clock.now()
        counted: list[tuple[str, str, float]] = []
        async with self.sessions() as session, session.begin():
            rows = {d.id: d for d in (await session.execute(
                select(Delivery).where(Delivery.id.in_([d.id for d, _ in results])))).scalars()}
            for claimed, outcome in results:
                d = rows.get(claimed.id)
                if d is None or d.status != Status.SENDING.value or d.claimed_by != self.instance:
                    continue  # replayed or recovered meanwhile
                status = after_attempt(outcome, attempts=d.attempts, max_attempts=self.s.max_attempts)
                d.status = status.value
                d.provider_id = outcome.provider_id or d.provider_id
                d.reason = outcome.reason
                if status is Status.FAILED:
                    delay = retry_delay(d.attempts, base=self.s.retry_base_seconds, cap=self.s.retry_cap_seconds)
                    cat = CATEGORIES.get(d.category) or CATEGORIES["registry"]
                    profile = await session.get(RecipientProfile, d.recipient)
                    d.next_attempt_at = not_before(self.s, cat, Channel(d.channel), profile,
                                                   now + timedelta(seconds=delay))
                    d.reason = f"{outcome.reason}; attempt {d.attempts + 1} of {self.s.max_attempts} at " \
                               f"{d.next_attempt_at.isoformat(timespec='seconds')}"
                elif status is Status.DEAD and not outcome.permanent:
                    d.reason = f"gave up after {d.attempts} attempts; last: {outcome.reason}"
                elif status is Status.DEAD:
                    d.reason = f"permanent failure: {outcome.reason}"
                counted.append((d.channel, status.value, (now - claimed.next_attempt_at).total_seconds()))
                d.version += 1
                d.updated_at = now
                await stage_delivery(session, self.stager, d)
        for channel, outcome, waited in counted:  # counted once the outcomes are committed
            count_outcome(channel, outcome)
            NOTIFY_DELIVERY_LATENCY.labels("notify", channel).observe(max(0.0, waited))

