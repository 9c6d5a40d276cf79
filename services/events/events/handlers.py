"""What the events service does with each consumed event."""

from __future__ import annotations

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from common.consumer import PoisonMessage
from common.events import CloudEvent
from events.contracts import RegistryInstitution
from events.models import Organiser


async def project_institution(session: AsyncSession, event: CloudEvent) -> None:
    """Keep the organiser projection current; an older version never overwrites a newer one."""
    try:
        data = RegistryInstitution.model_validate(event.data)
    except ValidationError as exc:
        raise PoisonMessage(f"registry institution payload invalid: {exc.errors()[:3]}") from exc
    row = await session.get(Organiser, data.id)
    if row is None:
        session.add(Organiser(**data.model_dump()))
    elif data.version >= row.version:
        for k, v in data.model_dump().items():
            setattr(row, k, v)
