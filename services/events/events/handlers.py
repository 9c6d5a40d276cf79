"""What the events service does with each consumed event: keep its registry projections current."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from common.consumer import parse_payload
from common.events import CloudEvent
from events.contracts import RegistryAlliance, RegistryInstitution, RegistryMentor
from events.models import Alliance, Mentor, Organiser


async def project_institution(session: AsyncSession, event: CloudEvent) -> None:
    """Upsert an institution (registered, updated, status changed, merged); an older version never wins."""
    data = parse_payload(RegistryInstitution, event, "registry institution")
    row = await session.get(Organiser, data.id)
    if row is None:
        session.add(Organiser(**data.model_dump()))
    elif data.version >= row.version:
        for k, v in data.model_dump().items():
            setattr(row, k, v)


async def project_alliance(session: AsyncSession, event: CloudEvent) -> None:
    """Upsert an alliance's membership (formed, updated, member joined/left, dissolved); an older version never wins."""
    data = parse_payload(RegistryAlliance, event, "registry alliance")
    members = sorted({m.institution_id for m in data.members} | (
        {data.lead_institution_id} if data.lead_institution_id else set()))
    fields = {"name_zh": data.name_zh, "status": data.status, "member_ids": members, "version": data.version}
    row = await session.get(Alliance, data.id)
    if row is None:
        session.add(Alliance(id=data.id, **fields))
    elif data.version >= row.version:
        for k, v in fields.items():
            setattr(row, k, v)


async def project_mentor(session: AsyncSession, event: CloudEvent) -> None:
    """Upsert a listed mentor's institution (listed, updated, unlisted: the affiliation outlives the listing); an
    older version never wins."""
    data = parse_payload(RegistryMentor, event, "registry mentor")
    row = await session.get(Mentor, data.id)
    if row is None:
        session.add(Mentor(**data.model_dump()))
    elif data.version >= row.version:
        for k, v in data.model_dump().items():
            setattr(row, k, v)
