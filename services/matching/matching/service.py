"""Matching use cases: keyword-only; each writes its rows and its outbox events in one transaction."""

from __future__ import annotations

import secrets
import uuid
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.db import utcnow
from common.errors import Conflict, Forbidden, NotFound, Unprocessable
from common.outbox import EventStager
from common.spreadsheet import csv_from_dicts
from matching import placement
from matching.contracts import (
    MATCH_EVENTS,
    MatchPayload,
    OpportunityClosed,
    OpportunityExpired,
    OpportunityMatched,
    OpportunityOpened,
    OpportunityPayload,
    OpportunityUpdated,
    PlacementAssigned,
    PlacementPayload,
    PlacementReason,
    PlacementRoundPayload,
    PlacementRoundPublished,
    PlacementUnplaced,
)
from matching.domain import (
    LIVE_MATCH,
    OUTCOME_FIELDS,
    SEAT_HOLDING_MATCH,
    TALENT_KINDS,
    Direction,
    MatchStatus,
    OpportunityAction,
    OpportunityStatus,
    Side,
    check_opening,
    check_pending_cap,
    check_seats,
    expiry_time,
    is_past_deadline,
    match_next,
    match_repeated,
    match_visible,
    opportunity_next,
    progress_entry,
    resolve_successor,
)
from matching.models import InstitutionView, Match, Opportunity, PlacementRound
from matching.schemas import MatchCreate, OpportunityCreate, OpportunityUpdate, PlacementRoundCreate
from matching.scoring import DEFAULT_CONCURRENT_COLLABORATIONS, WEIGHTS, Candidate, CandidateIndex, Query, tokenize

ACTIVE_INSTITUTION = "active"


def actor_label(actor: Principal | str) -> str:
    """How an actor is recorded on rows."""
    return actor if isinstance(actor, str) else actor.sub


# ---------------------------------------------------------------- opportunities

def opportunity_payload(opp: Opportunity) -> OpportunityPayload:
    """The public event payload of an opportunity (no contact details)."""
    return OpportunityPayload.model_validate(opp, from_attributes=True)


async def get_opportunity(*, session: AsyncSession, opportunity_id: str, lock: bool = False) -> Opportunity:
    """One opportunity, or 404; with `lock`, under its row lock until the transaction ends."""
    opp = await session.get(Opportunity, opportunity_id, with_for_update={"key_share": True} if lock else None)
    if opp is None:
        raise NotFound(f"no opportunity {opportunity_id}")
    return opp


def _require_acts_for(actor: Principal, institution_id: str | None, what: str) -> None:
    if not actor.acts_for(institution_id):
        raise Forbidden(f"only the office or an administrator of institution {institution_id} may {what}")


async def _stage_opp(session: AsyncSession, stager: EventStager, contract, opp: Opportunity) -> None:
    await stager.stage(session, contract, key=opp.id, payload=opportunity_payload(opp))


async def create_opportunity(
    *, session: AsyncSession, stager: EventStager, data: OpportunityCreate, actor: Principal,
) -> Opportunity:
    """Post an opportunity or offer as a draft (or open it at once when `open` is set)."""
    _require_acts_for(actor, data.institution_id, "post for it")
    async with session.begin():
        opp = Opportunity(
            id=str(uuid.uuid4()), **data.model_dump(exclude={"open", "kind", "direction"}),
            kind=data.kind.value, direction=data.direction.value, created_by=actor_label(actor),
        )
        opp.tokens = tokenize(opp.title_zh, opp.description_zh, " ".join(opp.skills))
        session.add(opp)
        if data.open:
            await _open(session, stager, opp)
    return opp


async def _open(session: AsyncSession, stager: EventStager, opp: Opportunity) -> None:
    now = utcnow()
    opp.status = opportunity_next(opp.status, OpportunityAction.OPEN)
    check_opening(deadline=opp.deadline, now=now, capacity=opp.capacity)
    opp.opened_at = now
    opp.updated_at = now
    await session.flush()
    await _stage_opp(session, stager, OpportunityOpened, opp)


async def update_opportunity(
    *, session: AsyncSession, stager: EventStager, opportunity_id: str, data: OpportunityUpdate, actor: Principal,
) -> Opportunity:
    """Edit a draft or open opportunity; an open one announces the change. Its capacity never drops below the seats
    accepted matches hold (checked under its row lock, like an acceptance)."""
    async with session.begin():
        opp = await get_opportunity(session=session, opportunity_id=opportunity_id, lock=True)
        _require_acts_for(actor, opp.institution_id, "edit this opportunity")
        opportunity_next(opp.status, OpportunityAction.EDIT)
        changes = data.model_dump(exclude_unset=True)
        if not changes:
            return opp
        if changes.get("capacity") is not None:
            taken = (await seats_taken(session=session, opportunity_ids=[opp.id])).get(opp.id, 0)
            if changes["capacity"] < taken:
                raise Conflict(f"{taken} seats are already held by accepted matches; the capacity cannot drop to "
                               f"{changes['capacity']}", seats_taken=taken)
        for k, v in changes.items():
            setattr(opp, k, v)
        opp.tokens = tokenize(opp.title_zh, opp.description_zh, " ".join(opp.skills))
        if opp.status == OpportunityStatus.OPEN:
            check_opening(deadline=opp.deadline, now=utcnow(), capacity=opp.capacity)
        opp.version += 1
        opp.updated_at = utcnow()
        if opp.status == OpportunityStatus.OPEN:
            await _stage_opp(session, stager, OpportunityUpdated, opp)
    return opp


async def transition_opportunity(
    *, session: AsyncSession, stager: EventStager, opportunity_id: str, action: OpportunityAction, actor: Principal,
) -> Opportunity:
    """Open or close an opportunity (the state machine decides what is allowed)."""
    async with session.begin():
        opp = await get_opportunity(session=session, opportunity_id=opportunity_id, lock=True)
        _require_acts_for(actor, opp.institution_id, f"{action.value} this opportunity")
        if action == OpportunityAction.OPEN:
            await _open(session, stager, opp)
        elif action == OpportunityAction.CLOSE:
            opp.status = opportunity_next(opp.status, action)
            opp.updated_at = utcnow()
            await _stage_opp(session, stager, OpportunityClosed, opp)
        else:
            raise Unprocessable(f"{action.value} is not something a caller can ask for")
        opp.version += 1
    return opp


async def seats_taken(*, session: AsyncSession, opportunity_ids: list[str]) -> dict[str, int]:
    """Seats held by accepted, agreed, running or completed matches, per opportunity."""
    if not opportunity_ids:
        return {}
    rows = await session.execute(
        select(Match.opportunity_id, func.coalesce(func.sum(Match.seats), 0))
        .where(Match.opportunity_id.in_(opportunity_ids), Match.status.in_([s.value for s in SEAT_HOLDING_MATCH]))
        .group_by(Match.opportunity_id)
    )
    return {oid: int(n) for oid, n in rows.all()}


async def list_opportunities(
    *, session: AsyncSession, status: str | None = None, kind: str | None = None, direction: str | None = None,
    institution_id: str | None = None, district: str | None = None, industry: str | None = None,
    limit: int = 50, offset: int = 0,
) -> tuple[list[Opportunity], int]:
    """Opportunities by filter, newest first, with the total count."""
    stmt = select(Opportunity)
    for col, val in ((Opportunity.status, status), (Opportunity.kind, kind), (Opportunity.direction, direction),
                     (Opportunity.institution_id, institution_id), (Opportunity.district, district)):
        if val is not None:
            stmt = stmt.where(col == val)
    rows = list((await session.execute(stmt.order_by(Opportunity.created_at.desc(), Opportunity.id))).scalars())
    if industry is not None:
        rows = [o for o in rows if industry in o.industries]
    return rows[offset:offset + limit], len(rows)


# ---------------------------------------------------------------- recommendations

async def _institution_stats(session: AsyncSession) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Per institution: completed, cancelled and live collaborations (either side of a match)."""
    completed: dict[str, int] = defaultdict(int)
    cancelled: dict[str, int] = defaultdict(int)
    live: dict[str, int] = defaultdict(int)
    rows = await session.execute(
        select(Match.from_institution_id, Match.to_institution_id, Match.status)
        .where(Match.status.in_([MatchStatus.COMPLETED, MatchStatus.CANCELLED, *LIVE_MATCH]))
    )
    for a, b, status in rows.all():
        bucket = completed if status == MatchStatus.COMPLETED else cancelled if status == MatchStatus.CANCELLED \
            else live
        bucket[a] += 1
        if b != a:
            bucket[b] += 1
    return completed, cancelled, live


async def build_candidates(*, session: AsyncSession, for_opportunity: Opportunity) -> list[Candidate]:
    """Active institutions from the projection, and open opportunities of the opposite direction."""
    completed, cancelled, live = await _institution_stats(session)
    institutions = list((await session.execute(
        select(InstitutionView).where(InstitutionView.status == ACTIVE_INSTITUTION))).scalars())
    certified = {i.id: i.certified for i in institutions}
    out = [
        Candidate(
            id=i.id, kind="institution", name=i.name_zh, institution_id=i.id, industries=tuple(i.industries),
            tokens=tuple(i.tokens), district=i.district, certified=i.certified,
            capacity_left=max(0, DEFAULT_CONCURRENT_COLLABORATIONS - live[i.id]),
            completed=completed[i.id], cancelled=cancelled[i.id],
        )
        for i in institutions
    ]
    other = Direction.OFFER if for_opportunity.direction == Direction.DEMAND else Direction.DEMAND
    offers = list((await session.execute(select(Opportunity).where(
        Opportunity.direction == other, Opportunity.status == OpportunityStatus.OPEN))).scalars())
    taken = await seats_taken(session=session, opportunity_ids=[o.id for o in offers])
    for o in offers:
        owner = o.institution_id or ""
        out.append(Candidate(
            id=o.id, kind=o.direction, name=o.title_zh, institution_id=owner, industries=tuple(o.industries),
            tokens=tuple(o.tokens), district=o.district, certified=certified.get(owner, False),
            capacity_left=max(0, o.capacity - taken.get(o.id, 0)),
            completed=completed[owner], cancelled=cancelled[owner],
        ))
    return out


REASON_TEXT = {
    "industry": "industries in common: {shared}",
    "text": "skills and description share terms: {terms}",
    "district": "{where}",
    "certification": "certified industry-education integration enterprise",
    "capacity": "capacity left for {needed} seat(s): {capacity:.0%}",
    "outcomes": "past collaborations completed: {outcomes:.0%} (smoothed)",
}


def explain(rec, *, needed: int, query_district: str | None) -> list[str]:
    """Readable reasons for the components that contributed to a score."""
    c = rec.components
    out = []
    if c["industry"] > 0:
        out.append(REASON_TEXT["industry"].format(shared=", ".join(rec.shared_industries)))
    if c["text"] > 0:
        out.append(REASON_TEXT["text"].format(terms="、".join(rec.shared_tokens[:6])))
    if c["district"] == 1.0:
        out.append(f"same district ({rec.candidate.district})")
    elif c["district"] > 0:
        out.append(f"neighbouring district ({rec.candidate.district} borders {query_district})")
    if c["certification"] > 0:
        out.append(REASON_TEXT["certification"])
    out.append(REASON_TEXT["capacity"].format(needed=needed, capacity=c["capacity"]))
    out.append(REASON_TEXT["outcomes"].format(outcomes=c["outcomes"]))
    return out


async def recommend(*, session: AsyncSession, opportunity_id: str, limit: int = 20) -> dict:
    """Rank institutions and offers for an opportunity by a transparent weighted score."""
    opp = await get_opportunity(session=session, opportunity_id=opportunity_id)
    candidates = await build_candidates(session=session, for_opportunity=opp)
    index = CandidateIndex(candidates)
    taken = (await seats_taken(session=session, opportunity_ids=[opp.id])).get(opp.id, 0)
    needed = max(1, opp.capacity - taken)
    query = Query(industries=tuple(opp.industries), tokens=tuple(opp.tokens), district=opp.district, needed=needed,
                  exclude_institution=opp.institution_id)
    items = []
    for rank, rec in enumerate(index.top(query, limit), start=1):
        contributions = {k: round(WEIGHTS[k] * v, 6) for k, v in rec.components.items()}
        items.append(dict(
            rank=rank, candidate_type=rec.candidate.kind, candidate_id=rec.candidate.id,
            institution_id=rec.candidate.institution_id, name=rec.candidate.name, score=round(rec.score, 6),
            components={k: round(v, 6) for k, v in rec.components.items()}, weights=WEIGHTS,
            contributions=contributions, reasons=explain(rec, needed=needed, query_district=opp.district),
            shared_industries=rec.shared_industries, shared_terms=rec.shared_tokens,
        ))
    return {"opportunity_id": opp.id, "query_terms": list(opp.tokens), "candidates_considered": len(candidates),
            "items": items}


# ---------------------------------------------------------------- matches

def match_payload(m: Match, opp_title: str) -> MatchPayload:
    """The public event payload of a match."""
    return MatchPayload(
        id=m.id, opportunity_id=m.opportunity_id, opportunity_title=opp_title, offer_id=m.offer_id,
        from_institution_id=m.from_institution_id, to_institution_id=m.to_institution_id, status=m.status,
        seats=m.seats, expires_at=m.expires_at, outcomes=m.outcomes, version=m.version,
    )


async def _stage_match(session: AsyncSession, stager: EventStager, m: Match, opp: Opportunity) -> None:
    await stager.stage(session, MATCH_EVENTS[m.status], key=m.id, payload=match_payload(m, opp.title_zh))


async def _known_institution(session: AsyncSession, institution_id: str, *, lock: bool = False) -> InstitutionView:
    view = await session.get(InstitutionView, institution_id, with_for_update={"key_share": True} if lock else None)
    if view is None:
        raise Unprocessable(f"matching knows no institution {institution_id} (yet)", field="institution")
    if view.successor_id:
        raise Unprocessable(f"institution {institution_id} was merged into {view.successor_id}; use that one",
                            successor_id=view.successor_id)
    if view.status != ACTIVE_INSTITUTION:
        raise Unprocessable(f"institution {institution_id} is {view.status}, not active")
    return view


async def propose_match(
    *, session: AsyncSession, stager: EventStager, data: MatchCreate, actor: Principal, ttl: timedelta,
    pending_cap: int,
) -> Match:
    """Express interest in a collaboration about an open opportunity; expires unanswered, capped per institution."""
    from_id = data.from_institution_id or actor.institution_id
    if from_id is None:
        raise Unprocessable("say which institution proposes (from_institution_id)")
    _require_acts_for(actor, from_id, "propose on its behalf")
    async with session.begin():
        opp = await get_opportunity(session=session, opportunity_id=data.opportunity_id, lock=True)
        if opp.status != OpportunityStatus.OPEN:
            raise Conflict(f"opportunity {opp.id} is {opp.status}; proposals need an open opportunity",
                           current_status=opp.status)
        taken = (await seats_taken(session=session, opportunity_ids=[opp.id])).get(opp.id, 0)
        check_seats(requested=data.seats, capacity=opp.capacity, taken=taken)
        now = utcnow()
        if is_past_deadline(deadline=opp.deadline, now=now):
            raise Conflict(f"opportunity {opp.id} passed its deadline")
        to_id = data.to_institution_id or opp.institution_id
        if to_id is None:
            raise Unprocessable("this opportunity has no institution on the platform; name to_institution_id")
        if to_id == from_id:
            raise Unprocessable("an institution cannot propose to itself")
        if opp.institution_id not in (from_id, to_id):
            raise Unprocessable("one side of a match must be the opportunity's institution")
        # The proposer's row lock makes its simultaneous proposals take turns: the pending cap and the duplicate
        # check below count committed rows, so neither is passed by proposals sent at the same instant.
        await _known_institution(session, from_id, lock=True)
        await _known_institution(session, to_id)
        if data.offer_id is not None:
            offer = await get_opportunity(session=session, opportunity_id=data.offer_id)
            if offer.institution_id not in (from_id, to_id):
                raise Unprocessable("the offer must belong to one side of the match")
        pending = (await session.execute(select(func.count()).select_from(Match).where(
            Match.from_institution_id == from_id, Match.status == MatchStatus.PROPOSED,
            or_(Match.expires_at.is_(None), Match.expires_at > now)))).scalar_one()
        check_pending_cap(pending=pending, cap=pending_cap)
        duplicate = (await session.execute(select(Match.id).where(
            Match.opportunity_id == opp.id, Match.from_institution_id == from_id, Match.to_institution_id == to_id,
            Match.status.in_([MatchStatus.PROPOSED, *LIVE_MATCH])))).first()
        if duplicate:
            raise Conflict(f"match {duplicate[0]} between these institutions on this opportunity is already open",
                           match_id=duplicate[0])
        m = Match(
            id=str(uuid.uuid4()), opportunity_id=opp.id, offer_id=data.offer_id, from_institution_id=from_id,
            to_institution_id=to_id, seats=data.seats, message=data.message, industries=list(opp.industries),
            district=opp.district, proposed_at=now,
            expires_at=expiry_time(proposed_at=now, ttl=ttl, opportunity_deadline=opp.deadline),
            created_by=actor_label(actor), updated_at=now,
            progress=[progress_entry(actor=actor, action="propose", status=MatchStatus.PROPOSED.value,
                                     note=data.message, at=now)],
        )
        session.add(m)
        await session.flush()
        await _stage_match(session, stager, m, opp)
    return m


async def get_match(*, session: AsyncSession, match_id: str, viewer: Principal, for_update: bool = False) -> Match:
    """One match, if the viewer may see it (`match_visible`); 404 otherwise, for reads and actions alike."""
    m = await session.get(Match, match_id, with_for_update=for_update)
    if m is None or not match_visible(viewer, from_institution_id=m.from_institution_id,
                                      to_institution_id=m.to_institution_id):
        raise NotFound(f"no match {match_id} visible to you")
    return m


async def list_matches(*, session: AsyncSession, viewer: Principal, status: str | None = None,
                       opportunity_id: str | None = None) -> list[Match]:
    """Matches the caller may see: all for the office, else those of the caller's institution."""
    stmt = select(Match).order_by(Match.proposed_at.desc(), Match.id).limit(500)
    if not viewer.is_office:  # match_visible, in SQL
        if viewer.institution_id is None:
            return []
        stmt = stmt.where(or_(Match.from_institution_id == viewer.institution_id,
                              Match.to_institution_id == viewer.institution_id))
    if status:
        stmt = stmt.where(Match.status == status)
    if opportunity_id:
        stmt = stmt.where(Match.opportunity_id == opportunity_id)
    return list((await session.execute(stmt)).scalars())


def _side(actor: Principal, m: Match) -> Side:
    if actor.is_office:
        return Side.EITHER
    if actor.acts_for(m.to_institution_id):
        return Side.RECIPIENT
    if actor.acts_for(m.from_institution_id):
        return Side.PROPOSER
    raise Forbidden("only the two institutions of a match (or the office) may act on it")


async def _sync_opportunity_fill(session: AsyncSession, stager: EventStager, opp: Opportunity) -> None:
    """Mark an opportunity matched when accepted matches take its capacity, reopen it when seats free up."""
    taken = (await seats_taken(session=session, opportunity_ids=[opp.id])).get(opp.id, 0)
    if opp.status == OpportunityStatus.OPEN and taken >= opp.capacity:
        opp.status = opportunity_next(opp.status, OpportunityAction.MATCH)
        contract = OpportunityMatched
    elif opp.status == OpportunityStatus.MATCHED and taken < opp.capacity \
            and not is_past_deadline(deadline=opp.deadline, now=utcnow()):
        opp.status = opportunity_next(opp.status, OpportunityAction.REOPEN)
        contract = OpportunityUpdated
    else:
        return
    opp.version += 1
    opp.updated_at = utcnow()
    await _stage_opp(session, stager, contract, opp)


async def act_on_match(
    *, session: AsyncSession, stager: EventStager, match_id: str, action: str, actor: Principal,
    outcomes: dict | None = None, note: str = "",
) -> Match:
    """Accept, decline, withdraw, agree, start, complete (with outcomes) or cancel a match; the step and its note go
    into the progress log. Accepting takes the opportunity's row lock and refuses seats beyond what is left."""
    async with session.begin():
        m = await get_match(session=session, match_id=match_id, viewer=actor, for_update=True)
        side = _side(actor, m)
        if match_repeated(m.status, action, side=side):
            return m  # a repeat (or a twin that waited for the lock): the final state, nothing published again
        # The opportunity's lock (after the match's, never before): accepting, cancelling and closing it take turns,
        # so its fill is counted on committed rows and announced once.
        opp = await get_opportunity(session=session, opportunity_id=m.opportunity_id, lock=True)
        now = utcnow()
        expired = m.status == MatchStatus.PROPOSED and m.expires_at is not None and m.expires_at <= now
        if expired:  # the expiry is committed (and announced) now; the action is refused below, after the commit
            await _expire_match(session, stager, m, opp, now)
        else:
            await _apply_match_action(session, stager, m, opp, action=action, side=side, actor=actor,
                                      outcomes=outcomes, note=note, now=now)
    if expired:
        raise Conflict(f"match {m.id} expired at {m.expires_at.isoformat()} before it was answered",
                       current_status=MatchStatus.EXPIRED.value)
    return m


async def _apply_match_action(session: AsyncSession, stager: EventStager, m: Match, opp: Opportunity, *, action: str,
                              side: Side, actor: Principal, outcomes: dict | None, note: str, now: datetime) -> None:
    """The state change of act_on_match, under both row locks."""
    if action == "accept" and opp.status != OpportunityStatus.OPEN:
        raise Conflict(f"opportunity {opp.id} is {opp.status}; it cannot take another partner now")
    new_status = match_next(m.status, action, side=side)
    if new_status == MatchStatus.ACCEPTED:
        taken = (await seats_taken(session=session, opportunity_ids=[opp.id])).get(opp.id, 0)
        check_seats(requested=m.seats, capacity=opp.capacity, taken=taken)
    if new_status == MatchStatus.COMPLETED:
        if outcomes is None:
            raise Unprocessable("completing a collaboration needs its outcomes", fields=list(OUTCOME_FIELDS))
        m.outcomes = {k: int(outcomes.get(k, 0)) for k in OUTCOME_FIELDS}
        m.completed_at = now
    if new_status in (MatchStatus.ACCEPTED, MatchStatus.DECLINED):
        m.decided_at = now
    m.status = new_status.value
    m.progress = [*m.progress, progress_entry(actor=actor, action=action, status=m.status, note=note, at=now)]
    m.version += 1
    m.updated_at = now
    await session.flush()
    await _stage_match(session, stager, m, opp)
    if new_status in (MatchStatus.ACCEPTED, MatchStatus.CANCELLED):
        await _sync_opportunity_fill(session, stager, opp)


async def add_progress_note(*, session: AsyncSession, match_id: str, note: str, actor: Principal) -> Match:
    """Add a note to a match's progress log without changing its status (either institution's administrators or the
    office; the people of both institutions read it)."""
    async with session.begin():
        m = await get_match(session=session, match_id=match_id, viewer=actor, for_update=True)
        _side(actor, m)
        now = utcnow()
        m.progress = [*m.progress, progress_entry(actor=actor, action="note", status=m.status, note=note, at=now)]
        m.version += 1
        m.updated_at = now
    return m


async def _expire_match(session: AsyncSession, stager: EventStager, m: Match, opp: Opportunity,
                        now: datetime) -> None:
    m.status = match_next(m.status, "expire", side=Side.SYSTEM).value
    m.progress = [*m.progress, {"at": now.isoformat(), "action": "expire", "status": m.status,
                                "note": "unanswered before it expired", "by": "system", "by_institution_id": None}]
    m.version += 1
    m.updated_at = now
    await session.flush()
    await _stage_match(session, stager, m, opp)


async def expire_due(*, sessions, stager: EventStager, now: datetime | None = None) -> dict[str, int]:
    """Expire unanswered proposals and opportunities past their deadline (run by the sweeper, or on demand)."""
    now = now or utcnow()
    counts = {"matches": 0, "opportunities": 0}
    async with sessions() as session, session.begin():
        due = list((await session.execute(select(Match).where(
            Match.status == MatchStatus.PROPOSED, Match.expires_at <= now).with_for_update(skip_locked=True)
            .limit(1000))).scalars())
        for m in due:
            opp = await session.get(Opportunity, m.opportunity_id)
            await _expire_match(session, stager, m, opp, now)
            counts["matches"] += 1
        opps = list((await session.execute(select(Opportunity).where(
            Opportunity.status == OpportunityStatus.OPEN, Opportunity.deadline <= now)
            .with_for_update(skip_locked=True).limit(1000))).scalars())
        for opp in opps:
            opp.status = opportunity_next(opp.status, OpportunityAction.EXPIRE)
            opp.version += 1
            opp.updated_at = now
            await _stage_opp(session, stager, OpportunityExpired, opp)
            counts["opportunities"] += 1
    return counts


# ---------------------------------------------------------------- tracking and reports

async def outcome_figures(*, session: AsyncSession, by: str, year: int | None = None) -> list[dict]:
    """Outcome figures of matches per institution (both sides), industry or district; optionally for one year."""
    rows = list((await session.execute(select(Match).where(
        Match.status.in_([MatchStatus.COMPLETED, MatchStatus.CANCELLED, MatchStatus.IN_PROGRESS])))).scalars())
    succ = await _successors(session)
    acc: dict[str, dict] = {}
    for m in rows:
        when = m.completed_at or m.updated_at
        if year is not None and when.year != year:
            continue
        if by == "institution":
            keys = sorted({resolve_successor(m.from_institution_id, succ), resolve_successor(m.to_institution_id,
                                                                                              succ)})
        elif by == "industry":
            keys = sorted(set(m.industries)) or ["unspecified"]
        elif by == "district":
            keys = [m.district or "unspecified"]
        else:
            raise Unprocessable("by must be institution, industry or district")
        for k in keys:
            row = acc.setdefault(k, {"key": k, "completed": 0, "cancelled": 0, "in_progress": 0,
                                     **{f: 0 for f in OUTCOME_FIELDS}})
            row[m.status] += 1
            if m.status == MatchStatus.COMPLETED and m.outcomes:
                for f in OUTCOME_FIELDS:
                    row[f] += int(m.outcomes.get(f, 0))
    return sorted(acc.values(), key=lambda r: (-r["completed"], r["key"]))


async def _successors(session: AsyncSession) -> dict[str, str | None]:
    rows = await session.execute(select(InstitutionView.id, InstitutionView.successor_id)
                                 .where(InstitutionView.successor_id.is_not(None)))
    return dict(rows.all())


REPORT_COLUMNS = ("year", "industry", "district", "demand_opportunities", "demand_headcount", "supply_offers",
                  "supply_capacity", "gap", "matches_agreed", "hires", "students_trained")


async def supply_demand_report(*, session: AsyncSession, year: int) -> dict:
    """Talent demand vs supply by industry and district for one year (opportunities opened that year)."""
    start = datetime(year, 1, 1, tzinfo=utcnow().tzinfo)
    end = datetime(year + 1, 1, 1, tzinfo=utcnow().tzinfo)
    opps = list((await session.execute(select(Opportunity).where(
        Opportunity.kind.in_([k.value for k in TALENT_KINDS]), Opportunity.opened_at >= start,
        Opportunity.opened_at < end))).scalars())
    cells: dict[tuple[str, str], dict] = {}

    def cell(industry: str, district: str) -> dict:
        return cells.setdefault((industry, district), {c: 0 for c in REPORT_COLUMNS} | {
            "year": year, "industry": industry, "district": district})

    for o in opps:
        for ind in sorted(set(o.industries)) or ["unspecified"]:
            c = cell(ind, o.district or "unspecified")
            if o.direction == Direction.DEMAND:
                c["demand_opportunities"] += 1
                c["demand_headcount"] += o.capacity
            else:
                c["supply_offers"] += 1
                c["supply_capacity"] += o.capacity
    matches = list((await session.execute(select(Match).where(
        Match.status.in_([MatchStatus.AGREED, MatchStatus.IN_PROGRESS, MatchStatus.COMPLETED]),
        Match.updated_at >= start, Match.updated_at < end))).scalars())
    for m in matches:
        for ind in sorted(set(m.industries)) or ["unspecified"]:
            c = cell(ind, m.district or "unspecified")
            c["matches_agreed"] += 1
            if m.outcomes:
                c["hires"] += int(m.outcomes.get("hires", 0))
                c["students_trained"] += int(m.outcomes.get("students_trained", 0))
    rows = sorted(cells.values(), key=lambda r: (r["industry"], r["district"]))
    for r in rows:
        r["gap"] = r["demand_headcount"] - r["supply_capacity"]
    totals = {k: sum(r[k] for r in rows) for k in REPORT_COLUMNS[3:]}
    return {"year": year, "generated_at": utcnow().isoformat(), "columns": list(REPORT_COLUMNS), "rows": rows,
            "totals": totals,
            "notes": "demand: talent demands, order classes, apprenticeships and internships opened in the year; "
                     "supply: offers of the same kinds; an opportunity with several industries counts in each"}


def report_csv(report: dict) -> str:
    """The supply-demand report as CSV (UTF-8 with BOM so spreadsheet software shows Chinese correctly; formula-like
    cells neutralised)."""
    return csv_from_dicts(list(REPORT_COLUMNS), report["rows"], lineterminator="\n")


# ---------------------------------------------------------------- placement rounds

def _problem(data: dict, seed: int) -> placement.PlacementProblem:
    return placement.PlacementProblem(
        positions=tuple(placement.Position(
            id=p["id"], capacity=p["capacity"], title=p.get("title", ""), host_id=p.get("host_institution_id"),
            ranking=tuple(p["ranking"]) if p.get("ranking") is not None else None,
            reserved=dict(p.get("reserved") or {})) for p in data["positions"]),
        applicants=tuple(placement.Applicant(id=a["id"], preferences=tuple(a.get("preferences") or ()),
                                             category=a.get("category")) for a in data["participants"]),
        teams=tuple(placement.Team(id=t["id"], members=tuple(t["members"]), preferences=tuple(t["preferences"]))
                    for t in data.get("teams") or ()),
        host_capacities=dict(data.get("host_capacities") or {}), seed=seed,
    )


async def create_round(*, session: AsyncSession, data: PlacementRoundCreate, actor: Principal) -> PlacementRound:
    """Record a placement round (validated now) and publish its lottery seed."""
    seed = data.seed if data.seed is not None else secrets.randbelow(2**31)
    problem = data.model_dump(exclude={"name", "kind", "seed"})
    placement.validate(_problem(problem, seed))
    async with session.begin():
        rnd = PlacementRound(id=str(uuid.uuid4()), name=data.name, kind=data.kind, seed=seed, problem=problem,
                             created_by=actor_label(actor))
        session.add(rnd)
    return rnd


async def get_round(*, session: AsyncSession, round_id: str) -> PlacementRound:
    """One placement round, or 404."""
    rnd = await session.get(PlacementRound, round_id)
    if rnd is None:
        raise NotFound(f"no placement round {round_id}")
    return rnd


async def run_round(*, session: AsyncSession, stager: EventStager, round_id: str) -> PlacementRound:
    """Solve a round by deferred acceptance, store the result and announce each participant's placement."""
    async with session.begin():
        rnd = await session.get(PlacementRound, round_id, with_for_update=True)
        if rnd is None:
            raise NotFound(f"no placement round {round_id}")
        if rnd.status != "draft":
            raise Conflict(f"placement round {round_id} was already published", current_status=rnd.status,
                           allowed=[])
        result = placement.solve(_problem(rnd.problem, rnd.seed))
        positions = {p["id"]: p for p in rnd.problem["positions"]}
        rnd.result = {"assignments": result.assignments, "unplaced": result.unplaced, "lottery": result.lottery,
                      "filled": result.filled, "choice_rank": result.choice_rank}
        rnd.status = "published"
        rnd.published_at = utcnow()
        rnd.version += 1
        for a in rnd.problem["participants"]:
            pid = result.assignments.get(a["id"])
            if pid is not None:
                pos = positions[pid]
                payload = PlacementPayload(
                    round_id=rnd.id, round_name=rnd.name, participant_id=a["id"], position_id=pid,
                    position_title=pos.get("title") or pid, host_institution_id=pos.get("host_institution_id"),
                    status="assigned", reason=None, version=rnd.version)
                contract = PlacementAssigned
            else:
                reasons = result.unplaced.get(a["id"], [])
                payload = PlacementPayload(
                    round_id=rnd.id, round_name=rnd.name, participant_id=a["id"], position_id=None,
                    position_title=None, host_institution_id=None, status="unplaced",
                    reason="; ".join(r["detail"] for r in reasons)[:2000] or None, version=rnd.version,
                    reasons=[PlacementReason(code=r["reason"], position_id=r.get("position_id"), detail_en=r["detail"],
                                             detail_zh=r.get("detail_zh", r["detail"])) for r in reasons])
                contract = PlacementUnplaced
            await stager.stage(session, contract, key=f"{rnd.id}:{a['id']}", payload=payload)
        await stager.stage(session, PlacementRoundPublished, key=rnd.id, payload=PlacementRoundPayload(
            round_id=rnd.id, round_name=rnd.name, kind=rnd.kind, seed=rnd.seed, placed=len(result.assignments),
            unplaced=len(result.unplaced), status=rnd.status, version=rnd.version))
    return rnd


def participant_result(rnd: PlacementRound, participant_id: str) -> dict:
    """One participant's placement or the reasons they were not placed."""
    if not any(a["id"] == participant_id for a in rnd.problem["participants"]):
        raise NotFound(f"{participant_id} is not a participant of round {rnd.id}")
    if rnd.result is None:
        raise Conflict(f"placement round {rnd.id} has not been run yet", current_status=rnd.status)
    res = rnd.result
    pid = res["assignments"].get(participant_id)
    titles = {p["id"]: p.get("title") or p["id"] for p in rnd.problem["positions"]}
    unit = next((t["id"] for t in rnd.problem.get("teams") or () if participant_id in t["members"]), participant_id)
    return {
        "round_id": rnd.id, "participant_id": participant_id, "status": "assigned" if pid else "unplaced",
        "position_id": pid, "position_title": titles.get(pid) if pid else None,
        "choice_rank": res["choice_rank"].get(participant_id), "lottery_number": res["lottery"].get(unit),
        "reasons": res["unplaced"].get(participant_id, []),
    }
