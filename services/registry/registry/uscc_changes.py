"""A registered USCC is the institution's identity: its administrator asks, the office decides."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.db import utcnow
from common.errors import Conflict, Forbidden, NotFound
from common.outbox import EventStager
from registry import service
from registry.contracts import UsccChangeDecided, UsccChangePayload, UsccChangeRequested
from registry.domain import InstitutionStatus, in_scope
from registry.models import UsccChangeRequest

PENDING, APPROVED, DECLINED = "pending", "approved", "declined"


def _payload(req: UsccChangeRequest) -> UsccChangePayload:
    return UsccChangePayload.model_validate(req, from_attributes=True)


async def request_change(
    *, session: AsyncSession, stager: EventStager, institution_id: str, uscc: str, reason: str | None,
    actor: Principal,
) -> UsccChangeRequest:
    """Ask the office to change an institution's registered USCC (its administrators; one pending request at a time;
    a USCC another institution holds is refused at once)."""
    async with session.begin():
        inst = await service.get_institution(session=session, institution_id=institution_id, for_update=True)
        if not in_scope(actor, inst.id):
            raise NotFound(f"no institution with id {institution_id}")
        if not actor.acts_for(inst.id):
            raise Forbidden("only the institution's administrators ask for a USCC change")
        if inst.status == InstitutionStatus.WITHDRAWN:
            raise Conflict(f"{inst.name_zh} is withdrawn; ask for its successor {inst.successor_id}")
        if inst.uscc == uscc:
            raise Conflict(f"{uscc} is already {inst.name_zh}'s USCC")
        if (dup := await service.find_duplicate(session, uscc=uscc, school_code=None, exclude_id=inst.id)):
            raise service.duplicate_conflict(*dup)
        pending = (await session.execute(select(UsccChangeRequest).where(
            UsccChangeRequest.institution_id == inst.id, UsccChangeRequest.status == PENDING))).scalars().first()
        if pending is not None:
            raise Conflict(f"a USCC change to {pending.requested_uscc} is already waiting for the office",
                           request_id=pending.id)
        req = UsccChangeRequest(institution_id=inst.id, current_uscc=inst.uscc, requested_uscc=uscc, reason=reason,
                                requested_by=service.actor_label(actor))
        session.add(req)
        await session.flush()
        await stager.stage(session, UsccChangeRequested, key=inst.id, payload=_payload(req))
    return req


async def list_requests(
    *, session: AsyncSession, institution_id: str | None, status: str | None, viewer: Principal,
) -> list[UsccChangeRequest]:
    """USCC change requests: every institution's for the office, one's own for its administrators."""
    if not viewer.is_office and (institution_id is None or not in_scope(viewer, institution_id)):
        raise Forbidden("USCC change requests are read by the office and the institution's administrators")
    stmt = select(UsccChangeRequest)
    if institution_id:
        stmt = stmt.where(UsccChangeRequest.institution_id == institution_id)
    if status:
        stmt = stmt.where(UsccChangeRequest.status == status)
    return list((await session.execute(stmt.order_by(UsccChangeRequest.requested_at).limit(1000))).scalars())


async def decide(
    *, session: AsyncSession, stager: EventStager, institution_id: str, request_id: str, approve: bool,
    note: str | None, actor: Principal,
) -> UsccChangeRequest:
    """The office approves (the USCC changes, versioned, with the institution's updated event) or declines."""
    if not actor.is_office:
        raise Forbidden("only the office decides USCC changes")
    async with session.begin():
        req = (await session.execute(select(UsccChangeRequest).where(UsccChangeRequest.id == request_id)
                                     .with_for_update())).scalars().first()
        if req is None or req.institution_id != institution_id:
            raise NotFound(f"no USCC change request {request_id} for institution {institution_id}")
        if req.status != PENDING:
            raise Conflict(f"this request was already {req.status}", status_=req.status)
        if approve:
            inst = await service.get_institution(session=session, institution_id=req.institution_id, for_update=True)
            if (dup := await service.find_duplicate(session, uscc=req.requested_uscc, school_code=None,
                                                    exclude_id=inst.id)):
                raise service.duplicate_conflict(*dup)
            await service.apply_changes(session=session, stager=stager, inst=inst,
                                        values={"uscc": req.requested_uscc}, actor=service.actor_label(actor))
        req.status = APPROVED if approve else DECLINED
        req.decided_by, req.decided_at, req.decision_note = service.actor_label(actor), utcnow(), note
        await session.flush()
        await stager.stage(session, UsccChangeDecided, key=req.institution_id, payload=_payload(req))
    return req
