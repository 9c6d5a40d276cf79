"""Certified industry-education integration enterprises: batches, pool entry and the lifecycle (rules in domain.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.db import utcnow
from common.errors import Conflict, Forbidden, NotFound, Unprocessable
from common.outbox import EventStager
from registry import service
from registry.contracts import CERTIFICATION_EVENTS, CertificationPayload
from registry.domain import (
    CERT_EVENT_FOR_ACTION,
    CERTIFIED_STATES,
    ENTERPRISE_ACTIONS,
    EVALUATION_RESULT,
    PUBLIC_LIST_STATES,
    CertAction,
    CertStatus,
    InstitutionKind,
    InstitutionStatus,
    in_scope,
    next_cert_status,
    objection_deadline_from,
)
from registry.models import Certification, CertificationBatch, Institution


async def create_batch(
    *, session: AsyncSession, name: str, year: int, objection_window_days: int,
) -> CertificationBatch:
    """Open a yearly certification batch (office)."""
    async with session.begin():
        if (await session.execute(select(CertificationBatch).where(CertificationBatch.name == name))).first():
            raise Conflict(f"a batch named {name!r} already exists")
        batch = CertificationBatch(name=name, year=year, objection_window_days=objection_window_days)
        session.add(batch)
    return batch


async def close_batch(*, session: AsyncSession, batch_id: str) -> CertificationBatch:
    """Close a batch to new applications (office)."""
    async with session.begin():
        batch = await get_batch(session=session, batch_id=batch_id, for_update=True)
        if batch.status == "closed":
            raise Conflict(f"batch {batch.name} is already closed")
        batch.status = "closed"
    return batch


async def get_batch(*, session: AsyncSession, batch_id: str, for_update: bool = False) -> CertificationBatch:
    """One batch by id (with `for_update`, under its row lock)."""
    batch = await session.get(CertificationBatch, batch_id, with_for_update=for_update or None)
    if batch is None:
        raise NotFound(f"no certification batch with id {batch_id}")
    return batch


async def list_batches(*, session: AsyncSession) -> list[CertificationBatch]:
    """Every batch, newest year first."""
    rows = await session.execute(select(CertificationBatch).order_by(CertificationBatch.year.desc(),
                                                                     CertificationBatch.name))
    return list(rows.scalars())


def payload(cert: Certification, batch: CertificationBatch | None, action: str | None,
            note: str | None = None) -> CertificationPayload:
    """The event payload of a certification file (`note`: the office's note on this step)."""
    return CertificationPayload(
        id=cert.id, institution_id=cert.institution_id, enterprise_name=cert.enterprise_name, batch_id=cert.batch_id,
        batch_name=batch.name if batch else None, year=batch.year if batch else None, status=cert.status,
        is_certified=cert.status in CERTIFIED_STATES, evaluation_result=cert.evaluation_result, action=action,
        note=note, objection_deadline=cert.objection_deadline, version=cert.version, updated_at=cert.updated_at,
    )


def _may_act_for_enterprise(actor: Principal, institution_id: str) -> None:
    if not actor.acts_for(institution_id):
        raise Forbidden(f"you may act only for your own institution ({actor.institution_id or 'none'})")


async def enter_pool(
    *, session: AsyncSession, stager: EventStager, institution_id: str, actor: Principal,
) -> Certification:
    """Put an enterprise into the cultivation pool (the office, or the enterprise's own administrator)."""
    _may_act_for_enterprise(actor, institution_id)
    async with session.begin():
        inst = await service.get_institution(session=session, institution_id=institution_id)
        if inst.kind != InstitutionKind.ENTERPRISE:
            raise Unprocessable(f"only enterprises can be certified; {inst.name_zh} is a {inst.kind}")
        if inst.status != InstitutionStatus.ACTIVE:
            raise Conflict(f"{inst.name_zh} is {inst.status}; only active enterprises enter the pool")
        if (await session.execute(select(Certification).where(Certification.institution_id == inst.id))).first():
            raise Conflict(f"{inst.name_zh} already has a certification file")
        now = utcnow()
        cert = Certification(institution_id=inst.id, enterprise_name=inst.name_zh, status=CertStatus.POOLED.value,
                             history=[{"at": now.isoformat(), "action": "enter_pool", "status": "pooled",
                                       "actor": service.actor_label(actor),
                                       "by": "office" if actor.is_office else "institution"}],
                             created_at=now, updated_at=now)
        session.add(cert)
        try:
            await session.flush()
        except IntegrityError as exc:
            raise Conflict(f"{inst.name_zh} already has a certification file") from exc
        await stager.stage(session, CERTIFICATION_EVENTS["pooled"], key=cert.id, payload=payload(cert, None, "pool"))
        await service.set_certification_status(session=session, stager=stager, institution_id=inst.id,
                                               certification_status=cert.status, actor=service.actor_label(actor))
    return cert


async def get_certification(
    *, session: AsyncSession, certification_id: str, viewer: Principal, for_update: bool = False,
) -> Certification:
    """One certification file by id, if it is within the viewer's scope (404 otherwise, for reads and actions)."""
    stmt = select(Certification).where(Certification.id == certification_id)
    if for_update:
        stmt = stmt.with_for_update()
    cert = (await session.execute(stmt)).scalars().first()
    if cert is None or not in_scope(viewer, cert.institution_id):
        raise NotFound(f"no certification with id {certification_id}")
    return cert


async def step(
    *, session: AsyncSession, stager: EventStager, certification_id: str, action: CertAction,
    batch_id: str | None, note: str | None, actor: Principal, now: datetime | None = None,
) -> Certification:
    """Move a certification file one step along its lifecycle; refused steps get 409 naming the allowed ones."""
    now = now or utcnow()
    async with session.begin():
        cert = await get_certification(session=session, certification_id=certification_id, viewer=actor,
                                       for_update=True)
        if action in ENTERPRISE_ACTIONS:
            _may_act_for_enterprise(actor, cert.institution_id)
        elif not actor.is_office:
            raise Forbidden(f"only the office may {action.value} a certification")
        target = next_cert_status(cert.status, action, now=now, objection_deadline=cert.objection_deadline)
        batch = await session.get(CertificationBatch, cert.batch_id) if cert.batch_id else None
        if action == CertAction.APPLY:
            if not batch_id:
                raise Unprocessable("applying needs the batch_id of an open batch")
            batch = await get_batch(session=session, batch_id=batch_id)
            if batch.status != "open":
                raise Conflict(f"batch {batch.name} is closed to applications")
            cert.batch_id = batch.id
            cert.evaluation_result = None
        if action == CertAction.CERTIFY:
            cert.certified_at = now
        if action == CertAction.ANNOUNCE:
            cert.announced_at = now
            cert.objection_deadline = objection_deadline_from(now, batch.objection_window_days if batch else 5)
        if action in EVALUATION_RESULT:
            cert.evaluation_result = EVALUATION_RESULT[action]
        cert.status = target.value
        cert.version += 1
        cert.updated_at = now
        entry = {"at": now.isoformat(), "action": action.value, "status": target.value,
                 "actor": service.actor_label(actor), "by": "office" if actor.is_office else "institution"}
        if note:
            entry["note"] = note
        cert.history = [*cert.history, entry]
        await session.flush()
        contract = CERTIFICATION_EVENTS[CERT_EVENT_FOR_ACTION[action]]
        await stager.stage(session, contract, key=cert.id, payload=payload(cert, batch, action.value, note))
        await service.set_certification_status(session=session, stager=stager, institution_id=cert.institution_id,
                                               certification_status=cert.status, actor=service.actor_label(actor))
    return cert


async def list_certifications(
    *, session: AsyncSession, status: str | None = None, batch_id: str | None = None,
    institution_id: str | None = None,
) -> list[Certification]:
    """Certification files, filtered (the office's work list)."""
    stmt = select(Certification)
    if status:
        stmt = stmt.where(Certification.status == status)
    if batch_id:
        stmt = stmt.where(Certification.batch_id == batch_id)
    if institution_id:
        stmt = stmt.where(Certification.institution_id == institution_id)
    return list((await session.execute(stmt.order_by(Certification.enterprise_name, Certification.id))).scalars())


async def public_list(
    *, session: AsyncSession, year: int | None = None, batch_id: str | None = None,
) -> list[tuple[Certification, Institution, CertificationBatch | None]]:
    """The announced certified enterprises (open data), with their institution and batch."""
    stmt = (select(Certification, Institution, CertificationBatch)
            .join(Institution, Institution.id == Certification.institution_id)
            .outerjoin(CertificationBatch, CertificationBatch.id == Certification.batch_id)
            .where(Certification.status.in_([s.value for s in PUBLIC_LIST_STATES])))
    if year is not None:
        stmt = stmt.where(CertificationBatch.year == year)
    if batch_id:
        stmt = stmt.where(Certification.batch_id == batch_id)
    rows = await session.execute(stmt.order_by(Certification.enterprise_name, Certification.id))
    return [tuple(r) for r in rows.all()]
