"""What notify does with each consumed event."""

from __future__ import annotations

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from common.consumer import PoisonMessage
from common.events import CloudEvent
from notify.contracts import OFFICE_INBOX, RegistryInstitution
from notify.models import InboxMessage


async def institution_registered(session: AsyncSession, event: CloudEvent) -> None:
    """Tell the office that an institution joined the registry."""
    try:
        inst = RegistryInstitution.model_validate(event.data)
    except ValidationError as exc:
        raise PoisonMessage(f"registry institution payload invalid: {exc.errors()[:3]}") from exc
    session.add(InboxMessage(
        recipient=OFFICE_INBOX, category="registry", title=f"新机构入驻：{inst.name_zh}",
        body=f"{inst.name_zh}（{inst.kind}，{inst.district}）已登记到平台。", event_id=event.id,
        event_type=event.type, subject=inst.id, data={"institution_id": inst.id},
    ))
