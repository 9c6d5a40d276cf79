"""Use cases of the registry: keyword-only, each writes its rows and their events in one transaction."""

from __future__ import annotations

import base64

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Conflict, NotFound
from common.outbox import EventStager
from registry.contracts import InstitutionPayload, InstitutionRegistered
from registry.models import Institution
from registry.schemas import InstitutionCreate


def institution_payload(inst: Institution) -> InstitutionPayload:
    """The public event payload for an institution (no personal data)."""
    return InstitutionPayload.model_validate(inst, from_attributes=True)


async def register_institution(
    *, session: AsyncSession, stager: EventStager, data: InstitutionCreate, actor: Principal,
) -> Institution:
    """Add an institution; a duplicate USCC or school code is refused naming the existing record."""
    clauses = []
    if data.uscc:
        clauses.append(Institution.uscc == data.uscc)
    if data.school_code:
        clauses.append(Institution.school_code == data.school_code)
    async with session.begin():
        if clauses:
            existing = (await session.execute(select(Institution).where(or_(*clauses)))).scalars().first()
            if existing is not None:
                field = "uscc" if data.uscc and existing.uscc == data.uscc else "school_code"
                raise Conflict(
                    f"an institution with this {field} is already registered: {existing.name_zh} ({existing.id})",
                    existing_id=existing.id, existing_name=existing.name_zh, field=field,
                )
        inst = Institution(**data.model_dump(mode="json"))
        session.add(inst)
        await session.flush()
        await stager.stage(session, InstitutionRegistered, key=inst.id, payload=institution_payload(inst))
    return inst


async def get_institution(*, session: AsyncSession, institution_id: str) -> Institution:
    """One institution by id."""
    inst = await session.get(Institution, institution_id)
    if inst is None:
        raise NotFound(f"no institution with id {institution_id}")
    return inst


def _encode_cursor(name: str, id_: str) -> str:
    return base64.urlsafe_b64encode(f"{name}\x00{id_}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[str, str]:
    name, _, id_ = base64.urlsafe_b64decode(cursor.encode()).decode().partition("\x00")
    return name, id_


async def list_institutions(
    *, session: AsyncSession, kind: str | None = None, district: str | None = None, q: str | None = None,
    limit: int = 50, cursor: str | None = None,
) -> tuple[list[Institution], str | None]:
    """Filter institutions, sorted by Chinese name then id (stable), a page at a time."""
    stmt = select(Institution)
    if kind:
        stmt = stmt.where(Institution.kind == kind)
    if district:
        stmt = stmt.where(Institution.district == district)
    if q:
        stmt = stmt.where(Institution.name_zh.contains(q, autoescape=True))
    if cursor:
        name, id_ = _decode_cursor(cursor)
        stmt = stmt.where(or_(Institution.name_zh > name, (Institution.name_zh == name) & (Institution.id > id_)))
    rows = (await session.execute(stmt.order_by(Institution.name_zh, Institution.id).limit(limit + 1))).scalars().all()
    nxt = _encode_cursor(rows[limit - 1].name_zh, rows[limit - 1].id) if len(rows) > limit else None
    return list(rows[:limit]), nxt
