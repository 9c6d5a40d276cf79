"""Use cases for bases, alliances and the mentor pool (the registry's network around institutions)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.db import utcnow
from common.errors import Conflict, Forbidden, NotFound, Unprocessable
from common.outbox import EventStager
from registry.contracts import (
    AllianceDissolved,
    AllianceFormed,
    AllianceJoinDeclined,
    AllianceJoinRequested,
    AllianceMemberJoined,
    AllianceMemberLeft,
    AlliancePayload,
    BaseClosed,
    BaseCoHostDeclined,
    BaseCoHostRequested,
    BaseCreated,
    BasePayload,
    BaseUpdated,
    MentorListed,
    MentorPayload,
    MentorUnlisted,
    MentorUpdated,
)
from registry.domain import (
    EVERY_INSTITUTION,
    MemberRole,
    MentorStatus,
    check_if_match,
    diff,
    institution_scope,
    mentor_visible,
)
from registry.models import Alliance, Institution, Mentor, TrainingBase
from registry.schemas import AllianceCreate, BaseCreate, BaseUpdate, MentorCreate, MentorUpdate
from registry.service import json_contains


async def _require_institutions(session: AsyncSession, ids: list[str]) -> None:
    found = set((await session.execute(select(Institution.id).where(Institution.id.in_(ids)))).scalars())
    missing = [i for i in ids if i not in found]
    if missing:
        raise Unprocessable(f"unknown institution(s): {', '.join(missing)}", missing=missing)


def _bump(row: Any) -> None:
    row.version += 1
    row.updated_at = utcnow()


# --- bases -------------------------------------------------------------------------------------------------------

def base_payload(base: TrainingBase, cohost: str | None = None) -> BasePayload:
    """The event payload of a base (`cohost` names who a cohost_* event is about)."""
    out = BasePayload.model_validate(base, from_attributes=True)
    out.cohost_institution_id = cohost
    return out


def _require_base_editor(actor: Principal, host_ids: list[str]) -> None:
    if not (actor.is_office or any(actor.acts_for(h) for h in host_ids)):
        raise Forbidden("only the office or an administrator of a host institution may change this base")


def split_hosts(actor: Principal, named: list[str]) -> tuple[list[str], list[str]]:
    """Named hosts as (hosts now, co-hosts asked to confirm): the office names hosts outright; anyone else hosts only
    the institutions they act for, and the others must each confirm."""
    if actor.is_office:
        return list(named), []
    return [h for h in named if actor.acts_for(h)], [h for h in named if not actor.acts_for(h)]


async def create_base(
    *, session: AsyncSession, stager: EventStager, data: BaseCreate, actor: Principal,
) -> TrainingBase:
    """Register a base (the office, or an administrator of one of its host institutions); other institutions named
    as hosts are asked to confirm (cohost_requested) and host it only once they do."""
    _require_base_editor(actor, data.host_institution_ids)
    hosts, pending = split_hosts(actor, list(dict.fromkeys(data.host_institution_ids)))
    async with session.begin():
        await _require_institutions(session, data.host_institution_ids)
        base = TrainingBase(**{**data.model_dump(mode="json"), "host_institution_ids": hosts,
                               "pending_host_ids": pending})
        session.add(base)
        await session.flush()
        await stager.stage(session, BaseCreated, key=base.id, payload=base_payload(base))
        for cohost in pending:
            await stager.stage(session, BaseCoHostRequested, key=base.id, payload=base_payload(base, cohost))
    return base


async def get_base(*, session: AsyncSession, base_id: str, for_update: bool = False) -> TrainingBase:
    """One base by id."""
    stmt = select(TrainingBase).where(TrainingBase.id == base_id)
    base = (await session.execute(stmt.with_for_update() if for_update else stmt)).scalars().first()
    if base is None:
        raise NotFound(f"no base with id {base_id}")
    return base


async def update_base(
    *, session: AsyncSession, stager: EventStager, base_id: str, data: BaseUpdate, if_match: str | None,
    actor: Principal,
) -> TrainingBase:
    """Edit a base under If-Match (the office or a host's administrator); newly named co-hosts are asked to confirm."""
    async with session.begin():
        base = await get_base(session=session, base_id=base_id, for_update=True)
        _require_base_editor(actor, base.host_institution_ids)
        check_if_match(if_match, base.version)
        if base.status == "closed":
            raise Conflict(f"base {base.name_zh} is closed")
        values = {k: v for k, v in data.model_dump(mode="json", exclude_unset=True).items() if v is not None}
        asked: list[str] = []
        if "host_institution_ids" in values:
            named = list(dict.fromkeys(values["host_institution_ids"]))
            await _require_institutions(session, named)
            kept = [h for h in named if h in base.host_institution_ids]
            added, asked = split_hosts(actor, [h for h in named if h not in base.host_institution_ids])
            values["host_institution_ids"] = kept + added
            if not values["host_institution_ids"]:
                raise Unprocessable("a base keeps at least one confirmed host")
            asked = [h for h in asked if h not in base.pending_host_ids]
            if asked:
                values["pending_host_ids"] = [*[h for h in base.pending_host_ids if h not in named], *asked]
        if diff({k: getattr(base, k) for k in values}, values):
            for k, v in values.items():
                setattr(base, k, v)
            _bump(base)
            await session.flush()
            await stager.stage(session, BaseUpdated, key=base.id, payload=base_payload(base))
            for cohost in asked:
                await stager.stage(session, BaseCoHostRequested, key=base.id, payload=base_payload(base, cohost))
    return base


async def answer_cohost(
    *, session: AsyncSession, stager: EventStager, base_id: str, institution_id: str, confirm: bool,
    actor: Principal,
) -> TrainingBase:
    """A named co-host's answer: its administrator (or the office) confirms, which makes it a host (base.updated), or
    declines; a host's administrator may also withdraw the invitation (cohost_declined)."""
    async with session.begin():
        base = await get_base(session=session, base_id=base_id, for_update=True)
        if institution_id not in base.pending_host_ids:
            raise NotFound(f"institution {institution_id} has not been asked to co-host {base.name_zh}")
        may_withdraw = not confirm and any(actor.acts_for(h) for h in base.host_institution_ids)
        if not (actor.acts_for(institution_id) or may_withdraw):
            raise Forbidden("only the named co-host's administrator (or the office) may answer for it")
        if base.status == "closed":
            raise Conflict(f"base {base.name_zh} is closed")
        base.pending_host_ids = [h for h in base.pending_host_ids if h != institution_id]
        if confirm:
            base.host_institution_ids = [*base.host_institution_ids, institution_id]
        _bump(base)
        await session.flush()
        if confirm:
            await stager.stage(session, BaseUpdated, key=base.id, payload=base_payload(base))
        else:
            await stager.stage(session, BaseCoHostDeclined, key=base.id, payload=base_payload(base, institution_id))
    return base


async def close_base(*, session: AsyncSession, stager: EventStager, base_id: str, actor: Principal) -> TrainingBase:
    """Close a base (the office or a host's administrator)."""
    async with session.begin():
        base = await get_base(session=session, base_id=base_id, for_update=True)
        _require_base_editor(actor, base.host_institution_ids)
        if base.status == "closed":
            raise Conflict(f"base {base.name_zh} is already closed")
        base.status = "closed"
        _bump(base)
        await session.flush()
        await stager.stage(session, BaseClosed, key=base.id, payload=base_payload(base))
    return base


async def list_bases(
    *, session: AsyncSession, base_type: str | None = None, category: str | None = None, industry: str | None = None,
    host_institution_id: str | None = None,
) -> list[TrainingBase]:
    """Bases, filtered, by name."""
    stmt = select(TrainingBase)
    if base_type:
        stmt = stmt.where(TrainingBase.base_type == base_type)
    if category:
        stmt = stmt.where(TrainingBase.category == category)
    if industry:
        stmt = stmt.where(json_contains(TrainingBase.industries, industry))
    if host_institution_id:
        stmt = stmt.where(json_contains(TrainingBase.host_institution_ids, host_institution_id))
    return list((await session.execute(stmt.order_by(TrainingBase.name_zh, TrainingBase.id).limit(1000))).scalars())


# --- alliances ---------------------------------------------------------------------------------------------------

def alliance_payload(alliance: Alliance, member: str | None = None, request: dict | None = None) -> AlliancePayload:
    """The event payload of an alliance (`member` names who joined, left or asked; `request` the join in question)."""
    return AlliancePayload(
        id=alliance.id, name_zh=alliance.name_zh, kind=alliance.kind, lead_institution_id=alliance.lead_institution_id,
        members=alliance.members, industries=alliance.industries, status=alliance.status, version=alliance.version,
        member_institution_id=member, requested_role=request["role"] if request else None,
        initiated_by=request["initiated_by"] if request else None,
    )


def _join_request(institution_id: str, role: MemberRole, initiated_by: str, actor: Principal) -> dict[str, str]:
    return {"institution_id": institution_id, "role": role.value, "initiated_by": initiated_by,
            "requested_by": actor.sub, "requested_at": utcnow().isoformat()}


async def form_alliance(
    *, session: AsyncSession, stager: EventStager, data: AllianceCreate, actor: Principal,
) -> Alliance:
    """Form an alliance (the office, or the lead institution's administrator); the lead is its first member. Members
    the office names join at once; those a lead names are invited and join when they accept."""
    if not actor.acts_for(data.lead_institution_id):
        raise Forbidden("only the office or the lead institution's administrator may form this alliance")
    members = [{"institution_id": data.lead_institution_id, "role": MemberRole.LEAD.value}]
    invited: list[dict[str, str]] = []
    for m in data.members:
        if m.institution_id == data.lead_institution_id:
            continue
        if any(x["institution_id"] == m.institution_id for x in [*members, *invited]):
            raise Unprocessable(f"institution {m.institution_id} is listed twice")
        if m.role == MemberRole.LEAD:
            raise Unprocessable("an alliance has one lead: lead_institution_id")
        if actor.is_office or actor.acts_for(m.institution_id):
            members.append({"institution_id": m.institution_id, "role": m.role.value})
        else:
            invited.append(_join_request(m.institution_id, m.role, "lead", actor))
    async with session.begin():
        await _require_institutions(session, [m["institution_id"] for m in [*members, *invited]])
        alliance = Alliance(name_zh=data.name_zh, kind=data.kind.value, lead_institution_id=data.lead_institution_id,
                            industries=[i.value for i in data.industries], members=members, join_requests=invited)
        session.add(alliance)
        await session.flush()
        await stager.stage(session, AllianceFormed, key=alliance.id, payload=alliance_payload(alliance))
        for req in invited:
            await stager.stage(session, AllianceJoinRequested, key=alliance.id,
                               payload=alliance_payload(alliance, req["institution_id"], req))
    return alliance


async def get_alliance(*, session: AsyncSession, alliance_id: str, for_update: bool = False) -> Alliance:
    """One alliance by id."""
    stmt = select(Alliance).where(Alliance.id == alliance_id)
    alliance = (await session.execute(stmt.with_for_update() if for_update else stmt)).scalars().first()
    if alliance is None:
        raise NotFound(f"no alliance with id {alliance_id}")
    return alliance


def _require_active(alliance: Alliance) -> None:
    if alliance.status != "active":
        raise Conflict(f"alliance {alliance.name_zh} is {alliance.status}")


def join_initiator(actor: Principal, *, lead_id: str, institution_id: str, role: MemberRole) -> str:
    """Who a join starts from: "office" (joins at once), "lead" (an invitation the institution accepts) or
    "institution" (a request the lead approves; an institution asks only to be a member, roles are the lead's)."""
    if actor.is_office:
        return "office"
    if actor.acts_for(lead_id):
        return "lead"
    if actor.acts_for(institution_id):
        if role != MemberRole.MEMBER:
            raise Forbidden(f"an institution asks to join as a member; the lead sets other roles ({role.value})")
        return "institution"
    raise Forbidden("only the office, the lead's administrator or the joining institution may add it")


async def add_member(
    *, session: AsyncSession, stager: EventStager, alliance_id: str, institution_id: str, role: MemberRole,
    actor: Principal,
) -> tuple[Alliance, bool]:
    """Add a member: the office adds it at once; the lead's administrator invites it, the institution's own
    administrator asks to join (each waits for the other side). Returns the alliance and whether it joined now."""
    async with session.begin():
        alliance = await get_alliance(session=session, alliance_id=alliance_id, for_update=True)
        initiator = join_initiator(actor, lead_id=alliance.lead_institution_id, institution_id=institution_id,
                                   role=role)
        _require_active(alliance)
        if role == MemberRole.LEAD:
            raise Unprocessable("an alliance has one lead: lead_institution_id")
        if any(m["institution_id"] == institution_id for m in alliance.members):
            raise Conflict(f"institution {institution_id} is already a member")
        await _require_institutions(session, [institution_id])
        waiting = next((r for r in alliance.join_requests if r["institution_id"] == institution_id), None)
        if initiator != "office" and (waiting is None or waiting["initiated_by"] == initiator):
            if waiting is not None:
                raise Conflict(f"institution {institution_id} already has a pending {waiting['initiated_by']} "
                               "join; the other side answers it")
            req = _join_request(institution_id, role, initiator, actor)
            alliance.join_requests = [*alliance.join_requests, req]
            _bump(alliance)
            await session.flush()
            await stager.stage(session, AllianceJoinRequested, key=alliance.id,
                               payload=alliance_payload(alliance, institution_id, req))
            return alliance, False
        # the office, or the other side of a pending join (asking to add is accepting it)
        if waiting is not None and initiator == "institution":
            role = MemberRole(waiting["role"])  # the lead's invitation sets the role
        await _admit(session, stager, alliance, institution_id, role)
    return alliance, True


async def _admit(session: AsyncSession, stager: EventStager, alliance: Alliance, institution_id: str,
                 role: MemberRole) -> None:
    alliance.join_requests = [r for r in alliance.join_requests if r["institution_id"] != institution_id]
    alliance.members = [*alliance.members, {"institution_id": institution_id, "role": role.value}]
    _bump(alliance)
    await session.flush()
    await stager.stage(session, AllianceMemberJoined, key=alliance.id,
                       payload=alliance_payload(alliance, institution_id))


async def answer_join(
    *, session: AsyncSession, stager: EventStager, alliance_id: str, institution_id: str, accept: bool,
    role: MemberRole | None, actor: Principal,
) -> Alliance:
    """Answer a pending join: the side that did not start it (or the office) accepts, with the lead free to set the
    role of an institution's request; either side declines or withdraws it (join_declined)."""
    async with session.begin():
        alliance = await get_alliance(session=session, alliance_id=alliance_id, for_update=True)
        req = next((r for r in alliance.join_requests if r["institution_id"] == institution_id), None)
        if req is None:
            raise NotFound(f"no pending join of {institution_id} to {alliance.name_zh}")
        lead, joiner = actor.acts_for(alliance.lead_institution_id), actor.acts_for(institution_id)
        if not (lead or joiner):
            raise Forbidden("only the office, the lead's administrator or the joining institution may answer")
        _require_active(alliance)
        if accept:
            answering = (req["initiated_by"] == "institution" and lead) or (req["initiated_by"] == "lead" and joiner)
            if not answering:
                raise Forbidden(f"this join was started by the {req['initiated_by']}: the other side accepts it")
            if role is not None and not lead:
                raise Forbidden("roles are set by the lead")
            chosen = role or MemberRole(req["role"])
            if chosen == MemberRole.LEAD:
                raise Unprocessable("an alliance has one lead: lead_institution_id")
            await _admit(session, stager, alliance, institution_id, chosen)
        else:
            alliance.join_requests = [r for r in alliance.join_requests if r["institution_id"] != institution_id]
            _bump(alliance)
            await session.flush()
            await stager.stage(session, AllianceJoinDeclined, key=alliance.id,
                               payload=alliance_payload(alliance, institution_id, req))
    return alliance


async def remove_member(
    *, session: AsyncSession, stager: EventStager, alliance_id: str, institution_id: str, actor: Principal,
) -> Alliance:
    """Remove a member (the office, the lead's administrator, or the member itself); the lead cannot leave."""
    async with session.begin():
        alliance = await get_alliance(session=session, alliance_id=alliance_id, for_update=True)
        if not (actor.acts_for(alliance.lead_institution_id) or actor.acts_for(institution_id)):
            raise Forbidden("only the office, the lead's administrator or the member itself may remove it")
        _require_active(alliance)
        if institution_id == alliance.lead_institution_id:
            raise Conflict("the lead cannot leave; dissolve the alliance instead")
        if not any(m["institution_id"] == institution_id for m in alliance.members):
            raise NotFound(f"institution {institution_id} is not a member of {alliance.name_zh}")
        alliance.members = [m for m in alliance.members if m["institution_id"] != institution_id]
        _bump(alliance)
        await session.flush()
        await stager.stage(session, AllianceMemberLeft, key=alliance.id,
                           payload=alliance_payload(alliance, institution_id))
    return alliance


async def dissolve_alliance(
    *, session: AsyncSession, stager: EventStager, alliance_id: str, actor: Principal,
) -> Alliance:
    """Dissolve an alliance (the office or the lead's administrator)."""
    async with session.begin():
        alliance = await get_alliance(session=session, alliance_id=alliance_id, for_update=True)
        if not actor.acts_for(alliance.lead_institution_id):
            raise Forbidden("only the office or the lead's administrator may dissolve the alliance")
        _require_active(alliance)
        alliance.status = "dissolved"
        _bump(alliance)
        await session.flush()
        await stager.stage(session, AllianceDissolved, key=alliance.id, payload=alliance_payload(alliance))
    return alliance


async def list_alliances(*, session: AsyncSession, member_institution_id: str | None = None) -> list[Alliance]:
    """Alliances by name, optionally those an institution belongs to."""
    rows = (await session.execute(select(Alliance).order_by(Alliance.name_zh, Alliance.id).limit(1000))).scalars()
    out = list(rows)
    if member_institution_id:
        out = [a for a in out if any(m["institution_id"] == member_institution_id for m in a.members)]
    return out


# --- mentors -----------------------------------------------------------------------------------------------------

def mentor_payload(mentor: Mentor) -> MentorPayload:
    """The event payload of a mentor: the name only with consent; never contact details or ID numbers."""
    consented = mentor.consent_given_at is not None and mentor.status == MentorStatus.LISTED
    return MentorPayload(id=mentor.id, institution_id=mentor.institution_id, title=mentor.title,
                         name=mentor.name if consented else None, industries=mentor.industries,
                         status=mentor.status, version=mentor.version)


def _require_mentor_editor(actor: Principal, institution_id: str) -> None:
    if not actor.acts_for(institution_id):
        raise Forbidden("only the office or the mentor's own institution may manage this person")


async def propose_mentor(*, session: AsyncSession, data: MentorCreate, actor: Principal) -> Mentor:
    """Add a person to the pool, unlisted until their consent is recorded (the office or their institution)."""
    _require_mentor_editor(actor, data.institution_id)
    async with session.begin():
        await _require_institutions(session, [data.institution_id])
        mentor = Mentor(**data.model_dump(mode="json"))
        session.add(mentor)
    return mentor


async def get_mentor(
    *, session: AsyncSession, mentor_id: str, viewer: Principal | None, for_update: bool = False,
) -> Mentor:
    """One mentor by id, if the viewer may see them (404 otherwise: an unconsented person is not confirmed to exist)."""
    stmt = select(Mentor).where(Mentor.id == mentor_id)
    mentor = (await session.execute(stmt.with_for_update() if for_update else stmt)).scalars().first()
    if mentor is None or not mentor_visible(viewer, status=mentor.status, institution_id=mentor.institution_id):
        raise NotFound(f"no mentor with id {mentor_id}")
    return mentor


async def record_consent(
    *, session: AsyncSession, stager: EventStager, mentor_id: str, given: bool, method: str, actor: Principal,
) -> Mentor:
    """Record consent (the person is listed publicly) or its withdrawal (unlisted, name no longer published)."""
    async with session.begin():
        mentor = await get_mentor(session=session, mentor_id=mentor_id, viewer=actor, for_update=True)
        _require_mentor_editor(actor, mentor.institution_id)
        if given:
            if mentor.status == MentorStatus.LISTED:
                raise Conflict(f"{mentor.name} has already consented and is listed")
            mentor.consent_given_at = utcnow()
            mentor.consent_method = method
            mentor.consent_recorded_by = actor.sub
            mentor.status = MentorStatus.LISTED.value
            contract = MentorListed
        else:
            if mentor.status != MentorStatus.LISTED:
                raise Conflict(f"{mentor.name} is not listed (status {mentor.status})")
            mentor.consent_given_at = None
            mentor.consent_method = f"withdrawn: {method}"
            mentor.consent_recorded_by = actor.sub
            mentor.status = MentorStatus.UNLISTED.value
            contract = MentorUnlisted
        _bump(mentor)
        await session.flush()
        await stager.stage(session, contract, key=mentor.id, payload=mentor_payload(mentor))
    return mentor


async def update_mentor(
    *, session: AsyncSession, stager: EventStager, mentor_id: str, data: MentorUpdate, if_match: str | None,
    actor: Principal,
) -> Mentor:
    """Edit a mentor under If-Match; a listed mentor's change is published (without personal data)."""
    async with session.begin():
        mentor = await get_mentor(session=session, mentor_id=mentor_id, viewer=actor, for_update=True)
        _require_mentor_editor(actor, mentor.institution_id)
        check_if_match(if_match, mentor.version)
        values = {k: v for k, v in data.model_dump(mode="json", exclude_unset=True).items() if v is not None}
        changed = diff({k: getattr(mentor, k) for k in values}, values)
        if changed:
            for k, v in values.items():
                setattr(mentor, k, v)
            _bump(mentor)
            await session.flush()
            if mentor.status == MentorStatus.LISTED and set(changed) & {"title", "name", "industries"}:
                await stager.stage(session, MentorUpdated, key=mentor.id, payload=mentor_payload(mentor))
    return mentor


async def list_mentors(
    *, session: AsyncSession, viewer: Principal | None, institution_id: str | None = None, title: str | None = None,
    industry: str | None = None,
) -> list[Mentor]:
    """The mentors the viewer may see (`mentor_visible` in SQL): listed ones for everyone; unconsented ones for the
    office and their own institution's administrators."""
    stmt = select(Mentor)
    scope = institution_scope(viewer)
    if scope is None:
        stmt = stmt.where(Mentor.status == MentorStatus.LISTED.value)
    elif scope != EVERY_INSTITUTION:
        stmt = stmt.where(or_(Mentor.status == MentorStatus.LISTED.value, Mentor.institution_id == scope))
    if institution_id:
        stmt = stmt.where(Mentor.institution_id == institution_id)
    if title:
        stmt = stmt.where(Mentor.title == title)
    if industry:
        stmt = stmt.where(json_contains(Mentor.industries, industry))
    return list((await session.execute(stmt.order_by(Mentor.name, Mentor.id).limit(1000))).scalars())
