"""What matching does with each consumed event."""

from __future__ import annotations

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from common.consumer import PoisonMessage
from common.events import CloudEvent
from matching.contracts import RegistryInstitution
from matching.models import InstitutionView


async def project_institution(session: AsyncSession, event: CloudEvent) -> None:
    """Upsert the institution projection; an older version never overwrites a newer one."""
    try:
        data = RegistryInstitution.model_validate(event.data)
    except ValidationError as exc:
        raise PoisonMessage(f"registry institution payload invalid: {exc.errors()[:3]}") from exc
    view = await session.get(InstitutionView, data.id)
    if view is None:
        session.add(InstitutionView(**data.model_dump(), updated_at=event.time))
    elif data.version >= view.version:
        for k, v in data.model_dump().items():
            setattr(view, k, v)
        view.updated_at = event.time
