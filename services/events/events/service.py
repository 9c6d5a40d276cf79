"""Use cases for activities, sessions, registrations, waitlists and check-in: keyword-only, rows + events in one
transaction. Seats are counted under a lock on the pool row (SELECT ... FOR UPDATE), so no pool is ever overbooked."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from types import SimpleNamespace

from sqlalchemy import and_, bindparam, cast, func, insert, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.auth import Principal, Role
from common.db import ON_ITS_OWN, UTCDateTime, utcnow
from common.errors import Conflict, Forbidden, InvalidTransition, NotFound, PreconditionFailed, Unprocessable
from common.outbox import EventStager
from common.paging import decode_cursor, encode_cursor
from events import contracts as c
from events import domain
from events.domain import ActivityStatus, ParticipantKind, RegistrationStatus
from events.models import (
    Activity,
    ActivitySession,
    Checkin,
    CheckinList,
    Competition,
    Organiser,
    Pool,
    Registration,
)
from events.schemas import ActivityCreate, CheckinListCreate, RegistrationCreate, SessionCreate

R = RegistrationStatus


# ---------------------------------------------------------------------------------------------- activities


def can_manage(act: Activity, actor: Principal | None) -> bool:
    """The office, or an institution admin of the organiser or a co-organiser."""
    if actor is None:
        return False
    if actor.is_office:
        return True
    return actor.has(Role.INSTITUTION_ADMIN) and actor.institution_id in {act.organiser_id, *act.co_organiser_ids}


def activity_payload(act: Activity, **extra) -> c.ActivityPayload:
    """The public event payload of an activity."""
    return c.ActivityPayload.model_validate({**act.model_dump(), **extra})


async def get_activity(*, session: AsyncSession, activity_id: str, viewer: Principal | None) -> Activity:
    """One activity; drafts are visible only to those who manage them."""
    act = await session.get(Activity, activity_id)
    if act is None or (act.status == ActivityStatus.DRAFT and not can_manage(act, viewer)):
        raise NotFound(f"no activity with id {activity_id}")
    return act


async def managed_activity(*, session: AsyncSession, activity_id: str, actor: Principal,
                           lock: bool = False) -> Activity:
    """An activity the actor manages (404 if invisible, 403 if visible but not theirs)."""
    stmt = select(Activity).where(Activity.id == activity_id)
    if lock:  # the lock an UPDATE of the row takes: sessions referencing the activity can still be inserted
        stmt = stmt.with_for_update(key_share=True)
    act = (await session.execute(stmt)).scalar_one_or_none()
    if act is None or (act.status == ActivityStatus.DRAFT and not can_manage(act, actor)):
        raise NotFound(f"no activity with id {activity_id}")
    if not can_manage(act, actor):
        raise Forbidden("only the organisers of this activity and the office may manage it")
    return act


async def organiser_names(*, session: AsyncSession, ids: set[str]) -> dict[str, str]:
    """Chinese names of institutions known to the projection."""
    if not ids:
        return {}
    rows = (await session.execute(select(Organiser.id, Organiser.name_zh).where(Organiser.id.in_(ids)))).all()
    return dict(rows)


async def create_activity(
    *, session: AsyncSession, stager: EventStager, data: ActivityCreate, actor: Principal,
) -> Activity:
    """Create a draft activity (and its capacity pool) for organisers the caller may act for."""
    if not actor.acts_for(data.organiser_id):
        raise Forbidden("you may only organise activities for your own institution")
    async with session.begin():
        ids = {data.organiser_id, *data.co_organiser_ids}
        known = await organiser_names(session=session, ids=ids)
        unknown = sorted(ids - set(known))
        if unknown:
            raise Unprocessable(f"not registered institutions (yet): {', '.join(unknown)}", unknown=unknown)
        inactive = (await session.execute(
            select(Organiser.id).where(Organiser.id == data.organiser_id, Organiser.status != "active"))).first()
        if inactive:
            raise Unprocessable(f"organiser {data.organiser_id} is not active in the registry")
        act = Activity(**data.model_dump(mode="python"))
        session.add(act)
        await session.flush()
        session.add(Pool(id=act.id, activity_id=act.id, capacity=act.capacity))
        if act.kind == domain.ActivityKind.COMPETITION:
            session.add(Competition(id=act.id))
        await stager.stage(session, c.ActivityCreated, key=act.id, payload=activity_payload(act))
    return act


async def list_activities(
    *, session: AsyncSession, viewer: Principal | None, status: str | None = None, kind: str | None = None,
    organiser_id: str | None = None, limit: int = 100, cursor: str | None = None, ends_after: datetime | None = None,
) -> tuple[list[Activity], str | None]:
    """Activities by start time in cursor pages (and the next page's cursor); drafts only for their managers;
    `ends_after` leaves out what was over before then."""
    stmt = select(Activity)
    if cursor:
        after, id_ = decode_cursor(cursor, datetime, str)
        stmt = stmt.where(tuple_(Activity.starts_at, Activity.id) > tuple_(after, id_))
    if ends_after is not None:
        stmt = stmt.where(Activity.ends_at >= ends_after)
    if status:
        stmt = stmt.where(Activity.status == status)
    if kind:
        stmt = stmt.where(Activity.kind == kind)
    if organiser_id:
        stmt = stmt.where(Activity.organiser_id == organiser_id)
    if viewer is None or not viewer.is_office:
        own = viewer.institution_id if viewer is not None and viewer.has(Role.INSTITUTION_ADMIN) else None
        # can_manage in SQL: a draft is listed to the admins of its organiser and of its co-organisers, as GET shows it
        managed = or_(Activity.organiser_id == own, cast(Activity.co_organiser_ids, JSONB).contains([own]))
        stmt = stmt.where(or_(Activity.status != ActivityStatus.DRAFT.value, managed)
                          if own else Activity.status != ActivityStatus.DRAFT.value)
    rows = list((await session.execute(stmt.order_by(Activity.starts_at, Activity.id).limit(limit + 1))).scalars())
    nxt = encode_cursor(rows[limit - 1].starts_at, rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], nxt


async def sessions_of(*, session: AsyncSession, activity_ids: list[str]) -> dict[str, list[ActivitySession]]:
    """The sessions of these activities, by activity, in start order."""
    out: dict[str, list[ActivitySession]] = defaultdict(list)
    if activity_ids:
        rows = await session.execute(select(ActivitySession).where(ActivitySession.activity_id.in_(activity_ids))
                                     .order_by(ActivitySession.starts_at, ActivitySession.id))
        for s in rows.scalars():
            out[s.activity_id].append(s)
    return out


async def transition_activity(
    *, session: AsyncSession, stager: EventStager, activity_id: str, target: ActivityStatus, actor: Principal,
    reason: str | None = None, if_match: int | None = None,
) -> Activity:
    """Move an activity along its lifecycle; cancelling ends every active registration and names the registrants."""
    async with session.begin():
        act = await managed_activity(session=session, activity_id=activity_id, actor=actor, lock=True)
        if if_match is not None and if_match != act.version:
            raise PreconditionFailed(f"activity is at version {act.version}, not {if_match}", version=act.version)
        domain.check_transition(act.status, target)
        act.status = target.value
        act.version += 1
        act.updated_at = utcnow()
        await session.execute(update(Pool).where(Pool.activity_id == act.id)
                              .values(open=target == ActivityStatus.REGISTRATION_OPEN))
        extra = {}
        if target == ActivityStatus.CANCELLED:
            act.cancel_reason = reason
            extra["registrant_ids"] = await _cancel_registrations(session=session, activity_id=act.id)
        await stager.stage(session, c.ACTIVITY_EVENTS[domain.ACTIVITY_EVENT_FOR[target]], key=act.id,
                           payload=activity_payload(act, **extra))
    return act


async def _cancel_registrations(*, session: AsyncSession, activity_id: str) -> list[str]:
    """Mark every active registration of an activity cancelled; return the distinct registrants to tell."""
    regs = (await session.execute(select(Registration).where(
        Registration.activity_id == activity_id, Registration.status.in_([s.value for s in domain.ACTIVE]),
    ).with_for_update())).scalars().all()
    for reg in regs:
        reg.status = R.CANCELLED.value
        reg.offer_expires_at = None
        reg.version += 1
    return sorted({r.participant_id for r in regs})


async def add_session(
    *, session: AsyncSession, activity_id: str, data: SessionCreate, actor: Principal,
) -> ActivitySession:
    """Add a session (with its own capacity pool) to an activity that has not started."""
    async with session.begin():
        # locked: the new pool opens with the activity's status, which a simultaneous transition may be changing
        act = await managed_activity(session=session, activity_id=activity_id, actor=actor, lock=True)
        if act.status not in (ActivityStatus.DRAFT, ActivityStatus.PUBLISHED, ActivityStatus.REGISTRATION_OPEN):
            raise Conflict(f"sessions can no longer be added (the activity is {act.status})")
        if data.starts_at < act.starts_at or data.ends_at > act.ends_at:
            raise Unprocessable("a session must lie within the activity's start and end")
        sess = ActivitySession(activity_id=act.id, **data.model_dump(mode="python"))
        session.add(sess)
        await session.flush()
        session.add(Pool(id=sess.id, activity_id=act.id, session_id=sess.id, capacity=sess.capacity,
                         open=act.status == ActivityStatus.REGISTRATION_OPEN))
    return sess


async def list_sessions(*, session: AsyncSession, activity_id: str) -> list[tuple[ActivitySession, int, int]]:
    """An activity's sessions with confirmed and waitlisted counts."""
    sessions = (await session.execute(select(ActivitySession).where(ActivitySession.activity_id == activity_id)
                                      .order_by(ActivitySession.starts_at))).scalars().all()
    counts = await _status_counts(session=session, activity_id=activity_id)
    return [(s, counts[s.id].get(R.CONFIRMED, 0), counts[s.id].get(R.WAITLISTED, 0)) for s in sessions]


async def _status_counts(*, session: AsyncSession, activity_id: str) -> dict[str, dict[str, int]]:
    rows = (await session.execute(
        select(Registration.pool_id, Registration.status, func.count())
        .where(Registration.activity_id == activity_id).group_by(Registration.pool_id, Registration.status))).all()
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for pool_id, status, n in rows:
        out[pool_id][status] = n
    return out


# ---------------------------------------------------------------------------------------------- registration


def registration_payload(reg: Registration, act: Activity, *, queue_position: int | None = None,
                         **extra) -> c.RegistrationPayload:
    """The public event payload of a registration (no contact details)."""
    return c.RegistrationPayload(
        id=reg.id, activity_id=reg.activity_id, activity_title=act.title_zh, session_id=reg.session_id,
        pool_id=reg.pool_id, participant_id=reg.participant_id, participant_kind=reg.participant_kind,
        institution_id=reg.institution_id, team_id=reg.team_id, status=reg.status, queue_position=queue_position,
        offer_expires_at=reg.offer_expires_at, version=reg.version, **extra,
    )


async def lock_pool(session: AsyncSession, pool_id: str) -> Pool:
    """Take the pool's row lock: every seat decision in this pool waits for the current one to commit."""
    pool = (await session.execute(select(Pool).where(Pool.id == pool_id).with_for_update())).scalar_one_or_none()
    if pool is None:
        raise NotFound(f"no capacity pool {pool_id}")
    return pool


async def _count(session: AsyncSession, pool_id: str, statuses) -> int:
    return (await session.execute(select(func.count()).select_from(Registration).where(
        Registration.pool_id == pool_id, Registration.status.in_([s.value for s in statuses])))).scalar_one()


async def _held_and_waiting(session: AsyncSession, pool_id: str) -> tuple[int, int]:
    """Seats held (confirmed + offered) and people waiting in a pool, in one query."""
    rows = dict((await session.execute(select(Registration.status, func.count()).where(
        Registration.pool_id == pool_id, Registration.status.in_([s.value for s in domain.ACTIVE]))
        .group_by(Registration.status))).all())
    return sum(rows.get(s.value, 0) for s in domain.HOLDS_SEAT), rows.get(R.WAITLISTED.value, 0)


async def queue_position(session: AsyncSession, reg: Registration) -> int | None:
    """1-based place on the waitlist, or None when not waitlisted."""
    if reg.status != R.WAITLISTED:
        return None
    ahead = (await session.execute(select(func.count()).select_from(Registration).where(
        Registration.pool_id == reg.pool_id, Registration.status == R.WAITLISTED.value,
        Registration.queue_seq < reg.queue_seq))).scalar_one()
    return ahead + 1


async def fill_pool(
    *, session: AsyncSession, stager: EventStager, pool: Pool, act: Activity, now: datetime, ttl_seconds: int,
) -> list[Registration]:
    """Offer freed seats to the waitlist in queue order (the pool must be locked); the activity's own offer time
    wins over the service default."""
    ttl_seconds = act.offer_ttl_seconds or ttl_seconds
    held, waiting = await _held_and_waiting(session, pool.id)
    n = domain.offers_to_make(capacity=pool.capacity, held=held, waiting=waiting)
    if n == 0:
        return []
    nxt = (await session.execute(select(Registration).where(
        Registration.pool_id == pool.id, Registration.status == R.WAITLISTED.value,
    ).order_by(Registration.queue_seq).limit(n))).scalars().all()
    for reg in nxt:
        reg.status = R.OFFERED.value
        reg.offer_expires_at = domain.offer_deadline(now, ttl_seconds)
        reg.version += 1
        reg.updated_at = now
        await stager.stage(session, c.OfferMade, key=reg.id, payload=registration_payload(reg, act))
    return list(nxt)


class _SameParticipantRaced(Exception):
    """A concurrent request for the same participant inserted the registration first."""


async def _claim_place(session: AsyncSession, pool_id: str) -> tuple[int | None, int]:
    """Lock the pool row and take the next queue number in one statement; returns (capacity, seq).

    The UPDATE waits for any other seat decision in this pool, then works on the latest row (no lost updates). It
    only matches an open pool: lifecycle transitions flip `open` under the same row lock, so no registration slips in
    after registration closed or the activity was cancelled."""
    row = (await session.execute(
        update(Pool).where(Pool.id == pool_id, Pool.open.is_(True)).values(next_seq=Pool.next_seq + 1)
        .returning(Pool.capacity, Pool.next_seq - 1))).first()
    if row is None:
        if await session.get(Pool, pool_id) is None:
            raise NotFound(f"no capacity pool {pool_id}")
        raise InvalidTransition("registration is not open (it closed a moment ago)", allowed=[])
    return row[0], row[1]


async def place(
    *, session: AsyncSession, stager: EventStager, act: Activity, pool_id: str, key: str, participant_id: str,
    kind: ParticipantKind, now: datetime, session_id: str | None = None, institution_id: str | None = None,
    team_id: str | None = None, display_name: str | None = None, contact_phone: str | None = None,
    contact_email: str | None = None, public_consent: bool = False,
) -> tuple[Registration, bool, int | None]:
    """Give a participant a seat or a waitlist place in a pool, or return their existing active registration.

    Returns (registration, created, queue position). Few statements run while the pool is locked: the lock holds
    every other registration for the pool, so its length is the pool's throughput limit."""
    existing = (await session.execute(select(Registration).where(
        Registration.pool_id == pool_id, Registration.participant_key == key))).scalar_one_or_none()
    if existing is not None and existing.status in domain.ACTIVE:
        return existing, False, await queue_position(session, existing)
    capacity, seq = await _claim_place(session, pool_id)
    if existing is not None:
        await session.refresh(existing)  # a twin request may have brought it back while we waited for the lock
        if existing.status in domain.ACTIVE:
            return existing, False, await queue_position(session, existing)
    held, waiting = await _held_and_waiting(session, pool_id)
    seat = domain.seat_available(capacity=capacity, held=held) and waiting == 0
    status = R.CONFIRMED if seat else R.WAITLISTED
    fields = dict(
        status=status.value, queue_seq=seq, offer_expires_at=None, display_name=display_name,
        institution_id=institution_id, team_id=team_id, contact_phone=contact_phone, contact_email=contact_email,
        public_consent=public_consent, participant_id=participant_id, updated_at=now,
    )
    if existing is not None:  # withdrawn, expired or cancelled before: the same registration comes back
        for k, v in fields.items():
            setattr(existing, k, v)
        existing.version += 1
        reg = existing
    else:
        reg = Registration(activity_id=act.id, pool_id=pool_id, session_id=session_id, participant_key=key,
                           participant_kind=kind.value, checkin_token=domain.new_token(), **fields)
        session.add(reg)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _SameParticipantRaced() from exc
    position = None if seat else waiting + 1  # the newest queue number is last in line
    contract = c.RegistrationConfirmed if seat else c.RegistrationWaitlisted
    await stager.stage(session, contract, key=reg.id, payload=registration_payload(reg, act, queue_position=position))
    return reg, True, position


async def existing_registration(
    *, session: AsyncSession, pool_id: str, key: str,
) -> tuple[Registration, bool, int | None]:
    """The registration a concurrent twin request created (after _SameParticipantRaced)."""
    async with session.begin():
        reg = (await session.execute(select(Registration).where(
            Registration.pool_id == pool_id, Registration.participant_key == key))).scalar_one()
        return reg, False, await queue_position(session, reg)


class RegistrationRow(SimpleNamespace):
    """A registration's column values, read or written with Core statements (shaped like `Registration`)."""


_REG = Registration.__table__
_POOL = Pool.__table__
_ACT = Activity.__table__
_HOLDS_SEAT = [s.value for s in domain.HOLDS_SEAT]
_ACTIVE = [s.value for s in domain.ACTIVE]

# The registration hot path as three fixed Core statements (compiled once, cached by SQLAlchemy): no ORM loads,
# no unit-of-work flush, no identity map.
_CLAIM = (  # lock the open pool row and take the next queue number (see _claim_place); read the title for the event
    update(_POOL).where(_POOL.c.id == bindparam("p_pool"), _POOL.c.open.is_(True),
                        _POOL.c.activity_id == bindparam("p_activity"))
    .values(next_seq=_POOL.c.next_seq + 1)
    .returning(_POOL.c.capacity, (_POOL.c.next_seq - 1).label("seq"), _POOL.c.session_id,
               select(_ACT.c.title_zh).where(_ACT.c.id == _POOL.c.activity_id).scalar_subquery().label("title_zh"))
)
_counts = (select(func.count().filter(or_(*(_REG.c.status == v for v in _HOLDS_SEAT))).label("held"),
                  func.count().filter(_REG.c.status == R.WAITLISTED.value).label("waiting"))
           .where(_REG.c.pool_id == bindparam("p_pool"), or_(*(_REG.c.status == v for v in _ACTIVE)))
           .subquery("counts"))  # equalities, not IN: no expanding parameters to render on every execution
_SEATS_AND_EXISTING = (  # run after _CLAIM, so it sees every registration committed before the lock was ours
    select(_counts.c.held, _counts.c.waiting, *_REG.c)
    .select_from(_counts.outerjoin(_REG, and_(_REG.c.pool_id == bindparam("p_pool"),
                                              _REG.c.participant_key == bindparam("p_key"))))
)
_INSERT = insert(_REG)
_REVIVE = update(_REG).where(_REG.c.id == bindparam("p_reg"))


# A first-time registration on PostgreSQL: one call of the function that migration 0003 creates, run on its own
# (autocommit), so that the pool's row lock is taken and released inside the server and never waits on this process.
# It decides the seat as domain.seat_available does and as nobody may jump a waitlist, inserts the registration and
# the matching event (with the activity's title and the queue position) and queues the NOTIFY that wakes the relays.
_REGISTER_NEW = text(
    "SELECT outcome, seat, queue_position, queue_seq FROM events_register_new(:activity_id, :pool_id, :session_id, "
    ":participant_key, :id, :participant_id, :participant_kind, :display_name, :institution_id, :contact_phone, "
    ":contact_email, :public_consent, :checkin_token, :created_at, :updated_at, :event_id, :topic, :confirmed_type, "
    ":waitlisted_type, :confirmed_payload, :waitlisted_payload, :channel)"
).bindparams(bindparam("created_at", type_=UTCDateTime), bindparam("updated_at", type_=UTCDateTime))


async def _register_fast(
    *, session: AsyncSession, stager: EventStager, activity_id: str, data: RegistrationCreate, actor: Principal,
    now: datetime, key: str, institution_id: str | None,
) -> tuple[RegistrationRow, bool, int | None] | None:
    """The common case of `register` in a few fixed statements; None when the pool is not open to this request (then
    the full path names the reason: no such activity or session, registration closed)."""
    pool_id = data.session_id or activity_id
    fields = dict(
        display_name=data.display_name or actor.name, institution_id=institution_id, team_id=None,
        contact_phone=data.contact_phone, contact_email=data.contact_email, public_consent=data.public_consent,
        participant_id=actor.sub, updated_at=now,
    )
    placed = await _register_new(session, stager, activity_id=activity_id, pool_id=pool_id, key=key, data=data,
                                 fields=fields)
    if placed is not None:
        return placed
    async with session.begin():  # registered before: the pool's lock, then the Core statements below
        conn = await session.connection()
        claim = (await conn.execute(_CLAIM, {"p_pool": pool_id, "p_activity": activity_id})).first()
        if claim is None or claim.session_id != data.session_id:
            return None
        fields["queue_seq"] = claim.seq
        row = (await conn.execute(_SEATS_AND_EXISTING, {"p_pool": pool_id, "p_key": key})).one()
        existing = RegistrationRow(**{c.key: row._mapping[c] for c in _REG.c}) if row.id is not None else None
        if existing is not None and existing.status in domain.ACTIVE:
            return existing, False, await queue_position(session, existing)
        seat = domain.seat_available(capacity=claim.capacity, held=row.held) and row.waiting == 0
        status = R.CONFIRMED if seat else R.WAITLISTED
        fields.update(status=status.value, offer_expires_at=None)
        if existing is not None:  # withdrawn, expired or cancelled before: the same registration comes back
            reg = existing
            fields["version"] = existing.version + 1
            reg.__dict__.update(fields)
            await conn.execute(_REVIVE, {"p_reg": reg.id, **fields})
        else:
            reg = _new_row(activity_id=activity_id, pool_id=pool_id, key=key, data=data, fields=fields)
            try:
                await conn.execute(_INSERT, vars(reg))
            except IntegrityError as exc:  # a twin request for the same participant committed first
                raise _SameParticipantRaced() from exc
        position = None if seat else row.waiting + 1  # the newest queue number is last in line
        contract = c.RegistrationConfirmed if seat else c.RegistrationWaitlisted
        await stager.stage(session, contract, key=reg.id, payload=registration_payload(
            reg, SimpleNamespace(title_zh=claim.title_zh), queue_position=position))
    return reg, True, position


def _new_row(*, activity_id: str, pool_id: str, key: str, data: RegistrationCreate, fields: dict) -> RegistrationRow:
    """A first-time registration's columns (version 1, a new id and check-in token)."""
    return RegistrationRow(
        id=str(uuid.uuid4()), activity_id=activity_id, pool_id=pool_id, session_id=data.session_id,
        participant_key=key, participant_kind=data.participant_kind.value, checkin_token=domain.new_token(),
        version=1, created_at=utcnow(), **fields)


async def _register_new(
    session: AsyncSession, stager: EventStager, *, activity_id: str, pool_id: str, key: str,
    data: RegistrationCreate, fields: dict,
) -> tuple[RegistrationRow, bool, int | None] | None:
    """Register a participant new to the pool in one statement (PostgreSQL, see _REGISTER_NEW); None when they
    registered in it before or the pool is not open to this request."""
    reg = _new_row(activity_id=activity_id, pool_id=pool_id, key=key, data=data,
                   fields={**fields, "offer_expires_at": None, "queue_seq": 0})
    act = SimpleNamespace(title_zh="")  # the function writes the activity's title into the event it keeps
    # Both possible events share one id; the function keeps the one that matches the seat decision.
    confirmed, c_row = stager.event_row(c.RegistrationConfirmed, key=reg.id, payload=registration_payload(
        SimpleNamespace(**vars(reg), status=R.CONFIRMED.value), act))
    _, w_row = stager.event_row(c.RegistrationWaitlisted, key=reg.id, event_id=confirmed.id, payload=(
        registration_payload(SimpleNamespace(**vars(reg), status=R.WAITLISTED.value), act, queue_position=0)))
    params = {**vars(reg), "event_id": confirmed.id, "topic": c_row["topic"], "confirmed_type": c_row["event_type"],
              "waitlisted_type": w_row["event_type"], "confirmed_payload": c_row["payload"],
              "waitlisted_payload": w_row["payload"], "channel": stager.channel}
    async with session.begin():  # commits nothing itself: the statement is its own transaction
        conn = await session.connection(execution_options=ON_ITS_OWN)
        try:
            done = (await conn.execute(_REGISTER_NEW, params)).one()
        except IntegrityError as exc:  # a twin request for the same participant committed first
            raise _SameParticipantRaced() from exc
        if done.outcome != "placed":
            return None
        stager.staged(session)  # an in-process relay wakes when the session's (empty) transaction ends
    reg.queue_seq = done.queue_seq
    reg.status = (R.CONFIRMED if done.seat else R.WAITLISTED).value
    return reg, True, done.queue_position


# An activity's kind never changes once created, so each process remembers it: the fast registration path learns
# whether an activity is a competition without a round trip after the first registration.
_KINDS: dict[str, str] = {}


async def _activity_kind(session: AsyncSession, activity_id: str) -> str | None:
    """The activity's kind (None if there is no such activity), remembered per process."""
    kind = _KINDS.get(activity_id)
    if kind is None:
        async with session.begin():
            kind = (await session.execute(select(Activity.kind).where(Activity.id == activity_id))).scalar()
        if kind is not None:
            if len(_KINDS) > 100_000:
                _KINDS.clear()
            _KINDS[activity_id] = kind
    return kind


def _registrant(data: RegistrationCreate, actor: Principal) -> tuple[str, str | None] | None:
    """The participant key and institution of a registration the actor may make, or None if they may not."""
    if data.participant_kind == ParticipantKind.INSTITUTION:
        if not actor.acts_for(data.institution_id) or not actor.has(Role.INSTITUTION_ADMIN, Role.OFFICE_ADMIN):
            return None
        return domain.participant_key(ParticipantKind.INSTITUTION, data.institution_id), data.institution_id
    if not actor.has(Role.MEMBER):
        return None
    if actor.institution_id and data.institution_id not in (None, actor.institution_id):
        return None  # naming another institution than one's own: the full path refuses it with the reason
    return domain.participant_key(ParticipantKind.INDIVIDUAL, actor.sub), data.institution_id or actor.institution_id


async def register(
    *, session: AsyncSession, stager: EventStager, activity_id: str, data: RegistrationCreate, actor: Principal,
    now: datetime,
) -> tuple[Registration | RegistrationRow, bool, int | None]:
    """Register the caller (or their institution); the same participant twice gets the same registration.

    Returns (registration, created, queue position). The allowed request to an open pool takes the fast path; every
    refusal (and its order: 404 before 409 before 403) comes from the full path below."""
    allowed = _registrant(data, actor)
    if allowed is not None and await _activity_kind(session, activity_id) == domain.ActivityKind.COMPETITION:
        allowed = None  # a competition takes teams only: the full path refuses with the reason
    if allowed is not None:
        key = allowed[0]
        try:
            done = await _register_fast(session=session, stager=stager, activity_id=activity_id, data=data,
                                        actor=actor, now=now, key=key, institution_id=allowed[1])
        except _SameParticipantRaced:
            return await existing_registration(session=session, pool_id=data.session_id or activity_id, key=key)
        if done is not None:
            return done
    try:
        async with session.begin():
            act = await get_activity(session=session, activity_id=activity_id, viewer=actor)
            domain.registration_open_for(act.status)
            domain.check_participant_kind(act.kind, data.participant_kind)
            if data.session_id:
                sess = await session.get(ActivitySession, data.session_id)
                if sess is None or sess.activity_id != act.id:
                    raise NotFound(f"activity {act.id} has no session {data.session_id}")
            if data.participant_kind == ParticipantKind.INSTITUTION:
                if not actor.acts_for(data.institution_id) or not actor.has(Role.INSTITUTION_ADMIN,
                                                                            Role.OFFICE_ADMIN):
                    raise Forbidden("only an admin of that institution may register it")
                key = domain.participant_key(ParticipantKind.INSTITUTION, data.institution_id)
                inst = data.institution_id
            else:
                if not actor.has(Role.MEMBER):
                    raise Forbidden("individuals register themselves with a member account")
                key = domain.participant_key(ParticipantKind.INDIVIDUAL, actor.sub)
                domain.check_represents(member_institution=actor.institution_id, represented=data.institution_id,
                                        what="this registration")
                inst = data.institution_id or actor.institution_id
            return await place(
                session=session, stager=stager, act=act, pool_id=data.session_id or act.id, key=key,
                participant_id=actor.sub, kind=data.participant_kind, now=now, session_id=data.session_id,
                institution_id=inst, display_name=data.display_name or actor.name, contact_phone=data.contact_phone,
                contact_email=data.contact_email, public_consent=data.public_consent,
            )
    except _SameParticipantRaced:
        return await existing_registration(session=session, pool_id=data.session_id or activity_id, key=key)


def owns(reg: Registration, actor: Principal) -> bool:
    """The registrant themself (for an institution registration, its admins too)."""
    return reg.participant_id == actor.sub or (
        reg.participant_kind == ParticipantKind.INSTITUTION and actor.acts_for(reg.institution_id)
        and not actor.is_office)


async def get_registration(*, session: AsyncSession, registration_id: str, actor: Principal) -> Registration:
    """A registration, for its registrant and the activity's managers."""
    reg = await session.get(Registration, registration_id)
    if reg is None:
        raise NotFound(f"no registration with id {registration_id}")
    if not owns(reg, actor):
        act = await session.get(Activity, reg.activity_id)
        if not can_manage(act, actor):
            raise NotFound(f"no registration with id {registration_id}")
    return reg


async def _locked_registration(session: AsyncSession, registration_id: str, actor: Principal,
                               *, manager_ok: bool) -> tuple[Registration, Activity, Pool]:
    reg = await session.get(Registration, registration_id)
    if reg is None:
        raise NotFound(f"no registration with id {registration_id}")
    act = await session.get(Activity, reg.activity_id)
    if not (owns(reg, actor) or (manager_ok and can_manage(act, actor))):
        raise NotFound(f"no registration with id {registration_id}")
    pool = await lock_pool(session, reg.pool_id)
    await session.refresh(reg)
    return reg, act, pool


async def withdraw(
    *, session: AsyncSession, stager: EventStager, registration_id: str, actor: Principal, now: datetime,
    ttl_seconds: int,
) -> Registration:
    """Withdraw (or decline an offer); a freed seat goes to the next person on the waitlist."""
    async with session.begin():
        reg, act, pool = await _locked_registration(session, registration_id, actor, manager_ok=True)
        if reg.status == R.WITHDRAWN:
            return reg  # a repeat (or a twin that waited for the lock): the final state, nothing published again
        if not domain.withdrawable(reg.status):
            raise InvalidTransition(f"a {reg.status} registration cannot be withdrawn", current=reg.status, allowed=[])
        if act.status in (ActivityStatus.FINISHED, ActivityStatus.ARCHIVED):
            raise Conflict(f"the activity is {act.status}; registrations can no longer change")
        freed = reg.status in domain.HOLDS_SEAT
        reg.status = R.WITHDRAWN.value
        reg.offer_expires_at = None
        reg.version += 1
        reg.updated_at = now
        await stager.stage(session, c.RegistrationWithdrawn, key=reg.id, payload=registration_payload(
            reg, act, reason="withdrawn by organiser" if not owns(reg, actor) else "withdrawn by registrant"))
        if freed:
            await fill_pool(session=session, stager=stager, pool=pool, act=act, now=now, ttl_seconds=ttl_seconds)
    return reg


async def accept_offer(
    *, session: AsyncSession, stager: EventStager, registration_id: str, actor: Principal, now: datetime,
    ttl_seconds: int,
) -> Registration:
    """Take up an offered seat before it lapses (the registrant only)."""
    async with session.begin():
        reg, act, pool = await _locked_registration(session, registration_id, actor, manager_ok=False)
        if reg.status == R.CONFIRMED:
            return reg  # a repeat (or a twin that waited for the lock): the final state, nothing published again
        if reg.status != R.OFFERED:
            raise InvalidTransition(f"only an offered registration can be accepted (this one is {reg.status})",
                                    current=reg.status, allowed=[])
        lapsed = domain.offer_lapsed(reg.offer_expires_at, now)
        if not lapsed:
            reg.status = R.CONFIRMED.value
            reg.offer_expires_at = None
            reg.version += 1
            reg.updated_at = now
            await stager.stage(session, c.RegistrationPromoted, key=reg.id, payload=registration_payload(reg, act))
            return reg
        await _expire(session=session, stager=stager, reg=reg, act=act, now=now)
        await fill_pool(session=session, stager=stager, pool=pool, act=act, now=now, ttl_seconds=ttl_seconds)
    raise Conflict(f"the offer lapsed at {reg.offer_expires_at or 'its deadline'}; the seat has moved on")


async def _expire(*, session: AsyncSession, stager: EventStager, reg: Registration, act: Activity,
                  now: datetime) -> None:
    deadline = reg.offer_expires_at
    reg.status = R.EXPIRED.value
    reg.version += 1
    reg.updated_at = now
    await stager.stage(session, c.OfferExpired, key=reg.id,
                       payload=registration_payload(reg, act, reason=f"offer lapsed at {deadline.isoformat()}"))


async def expire_offers(
    *, sessions: async_sessionmaker[AsyncSession], stager: EventStager, now: datetime, default_ttl: int,
) -> int:
    """Expire every lapsed offer and pass each seat on; one transaction per pool. Returns how many expired."""
    async with sessions() as session:
        pools = (await session.execute(select(Registration.pool_id).where(
            Registration.status == R.OFFERED.value, Registration.offer_expires_at <= now).distinct())).scalars().all()
    expired = 0
    for pool_id in pools:
        async with sessions() as session, session.begin():
            pool = await lock_pool(session, pool_id)
            act = await session.get(Activity, pool.activity_id)
            lapsed = (await session.execute(select(Registration).where(
                Registration.pool_id == pool_id, Registration.status == R.OFFERED.value,
                Registration.offer_expires_at <= now))).scalars().all()
            for reg in lapsed:
                await _expire(session=session, stager=stager, reg=reg, act=act, now=now)
            expired += len(lapsed)
            await fill_pool(session=session, stager=stager, pool=pool, act=act, now=now, ttl_seconds=default_ttl)
    return expired


async def change_capacity(
    *, session: AsyncSession, stager: EventStager, activity_id: str, session_id: str | None, capacity: int | None,
    actor: Principal, now: datetime, ttl_seconds: int,
) -> Pool:
    """Change a pool's capacity (never below the seats already held); extra room goes to the waitlist."""
    async with session.begin():
        # The activity's lock before the pool's, the order transitions take them in (no deadlock), and its version
        # is bumped below without losing a simultaneous transition's.
        act = await managed_activity(session=session, activity_id=activity_id, actor=actor, lock=True)
        pool = await lock_pool(session, session_id or act.id)
        if pool.activity_id != act.id:
            raise NotFound(f"activity {act.id} has no session {session_id}")
        held = await _count(session, pool.id, domain.HOLDS_SEAT)
        if capacity is not None and capacity < held:
            raise Conflict(f"{held} seats are already held; capacity cannot go below that", held=held)
        pool.capacity = capacity
        if session_id:
            (await session.get(ActivitySession, session_id)).capacity = capacity
        else:
            act.capacity = capacity
            act.version += 1
        await fill_pool(session=session, stager=stager, pool=pool, act=act, now=now, ttl_seconds=ttl_seconds)
    return pool


async def set_consent(*, session: AsyncSession, registration_id: str, actor: Principal, consent: bool) -> Registration:
    """The registrant gives or withdraws consent to the public participant list."""
    async with session.begin():
        reg = await session.get(Registration, registration_id, with_for_update=True)
        if reg is None or not owns(reg, actor):
            raise NotFound(f"no registration with id {registration_id}")
        reg.public_consent = consent
        reg.version += 1
    return reg


async def list_registrations(
    *, session: AsyncSession, activity_id: str, actor: Principal, status: str | None = None,
) -> list[Registration]:
    """All registrations of an activity (managers only), in queue order."""
    await managed_activity(session=session, activity_id=activity_id, actor=actor)
    stmt = select(Registration).where(Registration.activity_id == activity_id)
    if status:
        stmt = stmt.where(Registration.status == status)
    return list((await session.execute(stmt.order_by(Registration.pool_id, Registration.queue_seq))).scalars().all())


async def my_registrations(*, session: AsyncSession, actor: Principal) -> list[Registration]:
    """The caller's own registrations."""
    return list((await session.execute(select(Registration).where(Registration.participant_id == actor.sub)
                                       .order_by(Registration.created_at))).scalars().all())


async def public_participants(*, session: AsyncSession, activity_id: str) -> list[tuple[Registration, str | None]]:
    """Confirmed registrants who consented to appear, with their institution's name."""
    await get_activity(session=session, activity_id=activity_id, viewer=None)
    rows = (await session.execute(
        select(Registration, Organiser.name_zh).outerjoin(Organiser, Organiser.id == Registration.institution_id)
        .where(Registration.activity_id == activity_id, Registration.session_id.is_(None),
               Registration.status == R.CONFIRMED.value, Registration.public_consent.is_(True))
        .order_by(Registration.queue_seq))).all()
    return [(r, n) for r, n in rows]


async def checked_in_ids(*, session: AsyncSession, registration_ids: list[str]) -> set[str]:
    """Which of these registrations have been checked in on any list."""
    if not registration_ids:
        return set()
    return set((await session.execute(select(Checkin.registration_id).where(
        Checkin.registration_id.in_(registration_ids)).distinct())).scalars().all())


# ---------------------------------------------------------------------------------------------- check-in


async def add_checkin_list(
    *, session: AsyncSession, activity_id: str, data: CheckinListCreate, actor: Principal,
) -> CheckinList:
    """Add a check-in list to an activity (optionally for one session)."""
    async with session.begin():
        act = await managed_activity(session=session, activity_id=activity_id, actor=actor)
        if data.session_id:
            sess = await session.get(ActivitySession, data.session_id)
            if sess is None or sess.activity_id != act.id:
                raise NotFound(f"activity {act.id} has no session {data.session_id}")
        lst = CheckinList(activity_id=act.id, **data.model_dump())
        session.add(lst)
    return lst


async def list_checkin_lists(*, session: AsyncSession, activity_id: str, actor: Principal) -> list[CheckinList]:
    """The check-in lists of an activity (managers)."""
    await managed_activity(session=session, activity_id=activity_id, actor=actor)
    return list((await session.execute(select(CheckinList).where(CheckinList.activity_id == activity_id)))
                .scalars().all())


CHECKIN_STATUSES = (ActivityStatus.PUBLISHED, ActivityStatus.REGISTRATION_OPEN, ActivityStatus.REGISTRATION_CLOSED,
                    ActivityStatus.ONGOING)


async def check_in(
    *, session: AsyncSession, stager: EventStager, list_id: str, token: str, actor: Principal, now: datetime,
) -> tuple[Registration, Checkin, bool]:
    """Check a registrant in by their token on one list; scanning again reports `already` without counting twice."""
    async with session.begin():
        lst = await session.get(CheckinList, list_id)
        if lst is None:
            raise NotFound(f"no check-in list {list_id}")
        act = await managed_activity(session=session, activity_id=lst.activity_id, actor=actor)
        if act.status not in CHECKIN_STATUSES:
            raise Conflict(f"check-in is closed (the activity is {act.status})")
        # The registration's row lock makes simultaneous scans of one badge take turns: the first checks in, the
        # others find its check-in and answer `already` (no second event).
        reg = (await session.execute(select(Registration).where(Registration.checkin_token == token)
                                     .with_for_update())).scalar_one_or_none()
        if reg is None or reg.activity_id != act.id:
            raise NotFound("this token belongs to no registration of this activity")
        if reg.status != R.CONFIRMED:
            raise Conflict(f"the registration is {reg.status}, not confirmed", status=reg.status)
        if (lst.session_id or None) != (reg.session_id or None):
            where = f"session {lst.session_id}" if lst.session_id else "the activity"
            raise Conflict(f"this list admits registrations for {where} only")
        prior = (await session.execute(select(Checkin).where(
            Checkin.list_id == lst.id, Checkin.registration_id == reg.id))).scalar_one_or_none()
        if prior is not None:
            return reg, prior, True
        ck = Checkin(list_id=lst.id, registration_id=reg.id, checked_in_by=actor.sub, checked_in_at=now)
        session.add(ck)
        try:
            await session.flush()
        except IntegrityError as exc:  # a simultaneous scan of the same badge won the insert
            raise Conflict("this registration was just checked in on this list") from exc
        await stager.stage(session, c.CheckedIn, key=reg.id,
                           payload=registration_payload(reg, act, checkin_list_id=lst.id))
    return reg, ck, False


async def attendance(*, session: AsyncSession, activity_id: str, actor: Principal) -> dict:
    """Confirmed, waitlisted and checked-in figures, overall and per list."""
    await managed_activity(session=session, activity_id=activity_id, actor=actor)
    counts = await _status_counts(session=session, activity_id=activity_id)
    confirmed = sum(v.get(R.CONFIRMED, 0) for v in counts.values())
    waitlisted = sum(v.get(R.WAITLISTED, 0) for v in counts.values())
    lists = (await session.execute(select(CheckinList).where(CheckinList.activity_id == activity_id))).scalars().all()
    per_list = dict((await session.execute(select(Checkin.list_id, func.count()).where(
        Checkin.list_id.in_([lst.id for lst in lists])).group_by(Checkin.list_id))).all()) if lists else {}
    any_in = (await session.execute(select(func.count(func.distinct(Checkin.registration_id))).join(
        CheckinList, CheckinList.id == Checkin.list_id).where(CheckinList.activity_id == activity_id))).scalar_one()
    return {
        "activity_id": activity_id, "confirmed": confirmed, "waitlisted": waitlisted, "checked_in_any": any_in,
        "attendance_rate": round(any_in / confirmed, 4) if confirmed else None,
        "lists": [{"list_id": lst.id, "name": lst.name, "session_id": lst.session_id,
                   "expected": counts[lst.session_id or activity_id].get(R.CONFIRMED, 0),
                   "checked_in": per_list.get(lst.id, 0)} for lst in lists],
    }
