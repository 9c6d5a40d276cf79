"""Use cases of notify: keyword-only, each write in one transaction (with its delivery events in the outbox)."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from sqlalchemy import and_, case, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal, Role
from common.db import UTCDateTime, utcnow
from common.errors import Forbidden, InvalidTransition, NotFound, Unprocessable
from common.outbox import EventStager
from notify import templates
from notify.channels import webhook_target_problem
from notify.contracts import OFFICE_INBOX, PUBLIC_CERTIFICATION_FEED, institution_inbox
from notify.dispatch import count_outcome, stage_delivery, wake_after_commit
from notify.domain import (
    CATEGORIES,
    PREFERENCE_CHANNELS,
    REPLAYABLE,
    RULES,
    Channel,
    PreferenceRefused,
    Status,
    channel_enabled,
    check_preference,
    inbox_digested,
    unknown_event_patterns,
)
from notify.models import (
    Delivery,
    InboxMessage,
    InboxRead,
    Preference,
    RecipientProfile,
    TemplateOverride,
    WebhookSubscription,
)
from notify.schemas import EffectivePreference, InboxMessagePublic, ProfileUpdate, WebhookCreate

# --- whose inbox ---------------------------------------------------------------------------------------------------


def addresses_of(principal: Principal) -> list[str]:
    """The inbox addresses a caller reads: their own, the office's shared one, their institution's."""
    out = [principal.sub]
    if principal.is_office:
        out.append(OFFICE_INBOX)
    if principal.institution_id and principal.has(Role.INSTITUTION_ADMIN):
        out.append(institution_inbox(principal.institution_id))
    return out


def recipient_for(principal: Principal, recipient: str | None) -> str:
    """The recipient whose settings the caller manages: themself, or an inbox they administer."""
    if recipient is None or recipient == principal.sub:
        return principal.sub
    if recipient == OFFICE_INBOX and principal.is_office:
        return recipient
    if recipient.startswith("institution:"):
        inst = recipient.removeprefix("institution:")
        if principal.is_office or (principal.institution_id == inst and principal.has(Role.INSTITUTION_ADMIN)):
            return recipient
    raise Forbidden(f"you may not manage the settings of {recipient!r}")


def _encode_cursor(at: datetime, id_: str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{id_}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, _, id_ = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(at), id_
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unprocessable("the cursor is not one this API handed out") from exc


# --- inbox -----------------------------------------------------------------------------------------------------------


def _shared(principal: Principal) -> list[str]:
    """The shared inboxes the caller reads (the office's, their institution's): read state is kept per reader."""
    return [a for a in addresses_of(principal) if a != principal.sub]


def _view(principal: Principal):
    """The caller's messages with the caller's own read and archive state: a personal message keeps it on the row, a
    shared one in inbox_reads, one row per reader (so one office administrator's reading is not everyone's)."""
    personal = InboxMessage.recipient == principal.sub
    read_at = case((personal, InboxMessage.read_at), else_=InboxRead.read_at)
    archived_at = case((personal, InboxMessage.archived_at), else_=InboxRead.archived_at)
    joined = InboxMessage.__table__.outerjoin(InboxRead.__table__, and_(
        InboxRead.message_id == InboxMessage.id, InboxRead.reader == principal.sub))
    return joined, read_at, archived_at


def _public(msg: InboxMessage, read_at: datetime | None, archived_at: datetime | None) -> InboxMessagePublic:
    return InboxMessagePublic.model_validate(msg).model_copy(update={"read_at": read_at, "archived_at": archived_at})


async def unread_count(*, session: AsyncSession, principal: Principal) -> int:
    """Unread, unarchived messages in the caller's inboxes (by the caller's own reading of shared ones)."""
    joined, read_at, archived_at = _view(principal)
    return await session.scalar(
        select(func.count()).select_from(joined).where(
            InboxMessage.recipient.in_(addresses_of(principal)), read_at.is_(None), archived_at.is_(None))
    ) or 0


async def list_inbox(
    *, session: AsyncSession, principal: Principal, state: str = "active", category: str | None = None,
    limit: int = 50, cursor: str | None = None,
) -> tuple[list[InboxMessagePublic], str | None]:
    """The caller's messages, newest first: active (unarchived), unread, archived or all."""
    joined, read_at, archived_at = _view(principal)
    q = (select(InboxMessage, read_at, archived_at).select_from(joined)
         .where(InboxMessage.recipient.in_(addresses_of(principal))))
    if state == "active":
        q = q.where(archived_at.is_(None))
    elif state == "unread":
        q = q.where(archived_at.is_(None), read_at.is_(None))
    elif state == "archived":
        q = q.where(archived_at.is_not(None))
    if category:
        q = q.where(InboxMessage.category == category)
    if cursor:
        at, id_ = _decode_cursor(cursor)
        q = q.where(or_(InboxMessage.created_at < at, and_(InboxMessage.created_at == at, InboxMessage.id < id_)))
    rows = (await session.execute(
        q.order_by(InboxMessage.created_at.desc(), InboxMessage.id.desc()).limit(limit + 1))).all()
    nxt = _encode_cursor(rows[limit - 1][0].created_at, rows[limit - 1][0].id) if len(rows) > limit else None
    return [_public(m, r, a) for m, r, a in rows[:limit]], nxt


async def mark_message(
    *, session: AsyncSession, principal: Principal, message_id: str, action: str,
) -> InboxMessagePublic:
    """Mark one of the caller's messages read, unread, archived or unarchived (others' messages are not found); in a
    shared inbox the mark is the caller's own."""
    async with session.begin():
        msg = await session.get(InboxMessage, message_id)
        if msg is None or msg.recipient not in addresses_of(principal):
            raise NotFound(f"no message {message_id} in your inbox")
        state = msg
        if msg.recipient != principal.sub:  # the reader's row, created once even when two requests race
            await session.execute(pg_insert(InboxRead.__table__).values(message_id=msg.id, reader=principal.sub)
                                  .on_conflict_do_nothing())
            state = await session.get(InboxRead, (msg.id, principal.sub), with_for_update=True)
        now = utcnow()
        if action == "read":
            state.read_at = state.read_at or now
        elif action == "unread":
            state.read_at = None
        elif action == "archive":
            state.archived_at = state.archived_at or now
            state.read_at = state.read_at or now
        elif action == "unarchive":
            state.archived_at = None
        await session.flush()
        out = _public(msg, state.read_at, state.archived_at)
    return out


async def mark_all_read(*, session: AsyncSession, principal: Principal, category: str | None = None) -> int:
    """Mark every unread message of the caller (optionally of one category) read; in shared inboxes for the caller
    only."""
    now = utcnow()
    async with session.begin():
        q = update(InboxMessage).where(InboxMessage.recipient == principal.sub, InboxMessage.read_at.is_(None))
        if category:
            q = q.where(InboxMessage.category == category)
        changed = (await session.execute(q.values(read_at=now))).rowcount or 0
        shared = _shared(principal)
        if shared:
            unread = (select(InboxMessage.id, literal(principal.sub), literal(now, UTCDateTime))
                      .select_from(InboxMessage.__table__.outerjoin(InboxRead.__table__, and_(
                          InboxRead.message_id == InboxMessage.id, InboxRead.reader == principal.sub)))
                      .where(InboxMessage.recipient.in_(shared), InboxRead.read_at.is_(None)))
            if category:
                unread = unread.where(InboxMessage.category == category)
            stmt = pg_insert(InboxRead.__table__).from_select(["message_id", "reader", "read_at"], unread)
            stmt = stmt.on_conflict_do_update(index_elements=["message_id", "reader"], set_={"read_at": now},
                                              where=InboxRead.__table__.c.read_at.is_(None))
            changed += (await session.execute(stmt)).rowcount or 0
    return changed


async def public_feed(*, session: AsyncSession, limit: int = 50) -> list[InboxMessage]:
    """The public certification feed (announcements, certifications and revocations; no personal data)."""
    return list((await session.execute(
        select(InboxMessage).where(InboxMessage.recipient == PUBLIC_CERTIFICATION_FEED)
        .order_by(InboxMessage.created_at.desc(), InboxMessage.id.desc()).limit(limit))).scalars())


# --- preferences and profile -----------------------------------------------------------------------------------------


async def effective_preferences(*, session: AsyncSession, recipient: str) -> list[EffectivePreference]:
    """What the recipient gets, per category and channel, with the layer that decided it."""
    stored = {(p.category, p.channel): p.enabled for p in (await session.execute(
        select(Preference).where(Preference.recipient == recipient))).scalars()}
    out = []
    for cat in CATEGORIES.values():
        for ch in PREFERENCE_CHANNELS:
            enabled, source = channel_enabled(cat, ch, stored)
            out.append(EffectivePreference(category=cat.name, channel=ch.value, enabled=enabled, source=source,
                                           locked=cat.critical and ch in cat.default_channels))
        batched, source = inbox_digested(cat, stored)
        out.append(EffectivePreference(category=cat.name, channel=Channel.DIGEST.value, enabled=batched,
                                       source=source, locked=cat.critical))
    return out


async def set_preference(
    *, session: AsyncSession, recipient: str, category: str, channel: str, enabled: bool,
) -> None:
    """Store one preference; muting a critical category is refused with the reason."""
    try:
        check_preference(category, channel, enabled)
    except PreferenceRefused as exc:
        raise Unprocessable(str(exc), category=category, channel=channel) from exc
    async with session.begin():  # one upsert: the same setting sent twice at once is one row, never a 409
        await session.execute(pg_insert(Preference).values(
            recipient=recipient, category=category, channel=channel, enabled=enabled, updated_at=utcnow(),
        ).on_conflict_do_update(index_elements=["recipient", "category", "channel"],
                                set_={"enabled": enabled, "updated_at": utcnow()}))


async def get_profile(*, session: AsyncSession, recipient: str) -> RecipientProfile:
    """A recipient's profile (defaults when they never set one)."""
    return await session.get(RecipientProfile, recipient) or RecipientProfile(recipient=recipient)


async def put_profile(*, session: AsyncSession, recipient: str, data: ProfileUpdate) -> RecipientProfile:
    """Replace a recipient's addresses, locale and quiet hours."""
    if (data.quiet_start is None) != (data.quiet_end is None):
        raise Unprocessable("quiet hours need both quiet_start and quiet_end (or neither, for the platform default)")
    values = {**data.model_dump(), "updated_at": utcnow()}
    async with session.begin():  # one upsert: two simultaneous first saves are one row, the later one's values
        return (await session.scalars(pg_insert(RecipientProfile).values(recipient=recipient, **values)
                                      .on_conflict_do_update(index_elements=["recipient"], set_=values)
                                      .returning(RecipientProfile),
                                      execution_options={"populate_existing": True})).one()


# --- webhooks --------------------------------------------------------------------------------------------------------


async def create_webhook(
    *, session: AsyncSession, data: WebhookCreate, actor: Principal, allow_private: bool = False,
) -> WebhookSubscription:
    """Subscribe a system to signed events; returns the subscription with its secret (shown this once).

    Every pattern must select at least one event notify acts on (a misspelt name would never fire), and the URL must
    be a public endpoint unless `allow_private`."""
    unknown = unknown_event_patterns(data.events)
    if unknown:
        raise Unprocessable(f"no event is named by {', '.join(map(repr, unknown))}; valid event names: "
                            f"{', '.join(sorted(RULES))} ('*' wildcards allowed)", unknown=unknown,
                            valid_events=sorted(RULES))
    refused = await webhook_target_problem(str(data.url), allow_private=allow_private)
    if refused:
        raise Unprocessable(f"webhook URL refused: {refused}", url=str(data.url))
    async with session.begin():
        sub = WebhookSubscription(name=data.name, url=str(data.url), events=data.events,
                                  secret=data.secret or secrets.token_urlsafe(32), created_by=actor.sub)
        session.add(sub)
    return sub


async def list_webhooks(*, session: AsyncSession) -> list[WebhookSubscription]:
    """Every webhook subscription, newest first."""
    return list((await session.execute(
        select(WebhookSubscription).order_by(WebhookSubscription.created_at.desc()))).scalars())


async def deactivate_webhook(*, session: AsyncSession, webhook_id: str) -> WebhookSubscription:
    """Stop sending to a subscription (pending deliveries to it die with that reason)."""
    async with session.begin():
        sub = await session.get(WebhookSubscription, webhook_id)
        if sub is None:
            raise NotFound(f"no webhook subscription {webhook_id}")
        sub.active = False
    return sub


# --- deliveries ------------------------------------------------------------------------------------------------------


async def list_deliveries(
    *, session: AsyncSession, viewer: Principal, status: str | None = None, channel: str | None = None,
    recipient: str | None = None, event_id: str | None = None, limit: int = 50, cursor: str | None = None,
) -> tuple[list[Delivery], str | None]:
    """Deliveries the viewer may see (the office: all; others: their own inboxes'), newest first."""
    q = select(Delivery)
    if not viewer.is_office:
        q = q.where(Delivery.recipient.in_(addresses_of(viewer)))
    for col, val in ((Delivery.status, status), (Delivery.channel, channel), (Delivery.recipient, recipient),
                     (Delivery.event_id, event_id)):
        if val:
            q = q.where(col == val)
    if cursor:
        at, id_ = _decode_cursor(cursor)
        q = q.where(or_(Delivery.created_at < at, and_(Delivery.created_at == at, Delivery.id < id_)))
    rows = list((await session.execute(
        q.order_by(Delivery.created_at.desc(), Delivery.id.desc()).limit(limit + 1))).scalars())
    nxt = _encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], nxt


async def get_delivery(*, session: AsyncSession, viewer: Principal, delivery_id: str) -> Delivery:
    """One delivery, if the viewer may see it."""
    d = await session.get(Delivery, delivery_id)
    if d is None or not (viewer.is_office or d.recipient in addresses_of(viewer)):
        raise NotFound(f"no delivery {delivery_id}")
    return d


async def replay_delivery(
    *, session: AsyncSession, stager: EventStager, delivery_id: str, actor: Principal,
) -> Delivery:
    """Queue a failed or dead delivery again with a fresh set of attempts (an administrator's decision)."""
    async with session.begin():
        d = await session.get(Delivery, delivery_id, with_for_update=True)
        if d is None:
            raise NotFound(f"no delivery {delivery_id}")
        if d.status not in {s.value for s in REPLAYABLE}:
            raise InvalidTransition(f"a {d.status} delivery cannot be replayed; only failed or dead ones",
                                    allowed=[s.value for s in REPLAYABLE], current_status=d.status)
        d.status = Status.QUEUED.value
        d.reason = f"replayed by {actor.sub} after: {d.reason or 'no reason recorded'}"[:2000]
        d.attempts = 0
        d.replays += 1
        d.next_attempt_at = utcnow()
        d.claimed_at = d.claimed_by = None
        d.version += 1
        d.updated_at = utcnow()
        await stage_delivery(session, stager, d)
        wake_after_commit(session)
    return d


async def record_sms_receipt(
    *, session: AsyncSession, stager: EventStager, biz_id: str, success: bool, err_code: str | None,
) -> Delivery:
    """Apply the provider's delivery receipt: delivered, or dead with the carrier's error (not resent blindly)."""
    async with session.begin():
        # Locked: a provider resends receipts, and a resend arriving with the first must find the first one applied.
        d = (await session.execute(select(Delivery).where(Delivery.provider_id == biz_id, Delivery.channel == "sms")
                                   .with_for_update())).scalars().first()
        if d is None:
            raise NotFound(f"no SMS delivery with provider id {biz_id}")
        if d.status == (Status.DELIVERED.value if success else Status.DEAD.value):
            return d  # the same receipt again: the final state, nothing published again
        if d.status != Status.SENT.value:
            raise InvalidTransition(f"a receipt applies to a sent SMS; this one is {d.status}",
                                    allowed=[Status.SENT.value], current_status=d.status)
        d.status = Status.DELIVERED.value if success else Status.DEAD.value
        d.reason = None if success else f"carrier reported failure {err_code or 'unknown'}"
        d.version += 1
        d.updated_at = utcnow()
        await stage_delivery(session, stager, d)
    count_outcome(d.channel, d.status)
    return d


# --- templates -------------------------------------------------------------------------------------------------------


async def effective_template(*, session: AsyncSession, event: str, locale: str) -> tuple[str, str, str]:
    """(title, body, source) of the template used for an event name and locale."""
    o = await session.get(TemplateOverride, (event, locale))
    if o is not None:
        return o.title, o.body, "override"
    src = templates.builtin(event, locale)
    if src is None:
        raise NotFound(f"no template for {event!r}; known: {', '.join(templates.builtin_events())}")
    return src[0], src[1], "builtin"


async def put_template(
    *, session: AsyncSession, event: str, locale: str, title: str, body: str, actor: Principal,
) -> TemplateOverride:
    """Replace a template after checking it compiles and renders in the sandbox with sample data."""
    if templates.builtin(event, locale) is None:
        raise NotFound(f"no event {event!r} has a template; known: {', '.join(templates.builtin_events())}")
    try:
        templates.render((title, body), templates.sample_context(event), strict=True)
    except templates.TemplateInvalid as exc:
        raise Unprocessable(f"template refused: {exc}") from exc
    values = {"title": title, "body": body, "updated_by": actor.sub, "updated_at": utcnow()}
    async with session.begin():  # one upsert: two simultaneous first saves are one row, the later one's text
        return (await session.scalars(pg_insert(TemplateOverride).values(event=event, locale=locale, **values)
                                      .on_conflict_do_update(index_elements=["event", "locale"], set_=values)
                                      .returning(TemplateOverride),
                                      execution_options={"populate_existing": True})).one()


async def preview_template(
    *, session: AsyncSession, event: str, locale: str, title: str | None, body: str | None, data: dict | None,
) -> templates.Rendered:
    """Render a stored template or a draft with sample (or given) data, in the sandbox."""
    if title is None or body is None:
        stored_title, stored_body, _ = await effective_template(session=session, event=event, locale=locale)
        title, body = title or stored_title, body or stored_body
    context = templates.sample_context(event)
    if data is not None:
        context["data"] = data
    try:
        return templates.render((title, body), context, strict=True)
    except templates.TemplateInvalid as exc:
        raise Unprocessable(f"template refused: {exc}") from exc
