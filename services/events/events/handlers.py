"""What the events service does with each consumed event: keep its registry projections current."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from common.consumer import parse_payload
from common.events import CloudEvent
from events.contracts import RegistryAlliance, RegistryInstitution, RegistryMentor
from events.models import Alliance, Mentor, Organiser


async def _upsert_newer(session: AsyncSession, model: type, row_id: str, fields: dict[str, Any]) -> None:
    """Insert the projected row, or update it unless it already holds a newer version (an older one never wins)."""
    row = await session.get(model, row_id)
    if row is None:
        session.add(model(id=row_id, **fields))
    elif fields["version"] >= row.version:
        for k, v in fields.items():
            setattr(row, k, v)


async def project_institution(session: AsyncSession, event: CloudEvent) -> None:
    """Upsert an institution (registered, updated, status changed, merged); an older version never wins."""
    data = parse_payload(RegistryInstitution, event, "registry institution")
    await _upsert_newer(session, Organiser, data.id, data.model_dump(exclude={"id"}))


async def project_alliance(session: AsyncSession, event: CloudEvent) -> None:
    """Upsert an alliance's membership (formed, updated, member joined/left, dissolved); an older version never wins."""
    data = parse_payload(RegistryAlliance, event, "registry alliance")
    members = sorted({m.institution_id for m in data.members} | (
        {data.lead_institution_id} if data.lead_institution_id else set()))
    await _upsert_newer(session, Alliance, data.id, {
        "name_zh": data.name_zh, "status": data.status, "member_ids": members, "version": data.version})


async def project_mentor(session: AsyncSession, event: CloudEvent) -> None:
    """Upsert a listed mentor's institution (listed, updated, unlisted: the affiliation outlives the listing); an
    older version never wins."""
    data = parse_payload(RegistryMentor, event, "registry mentor")
    await _upsert_newer(session, Mentor, data.id, data.model_dump(exclude={"id"}))
