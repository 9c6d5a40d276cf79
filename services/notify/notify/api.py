"""HTTP routes of the notify service: each caller reads only their own inbox."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select

from common.auth import CurrentPrincipal, Principal
from common.service import SessionDep
from notify.contracts import OFFICE_INBOX
from notify.models import InboxMessage

router = APIRouter(prefix="/inbox", tags=["inbox"])


class InboxMessagePublic(BaseModel):
    """A notification as its recipient sees it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    category: str
    title: str
    body: str
    event_id: str
    event_type: str
    subject: str | None
    created_at: datetime
    read_at: datetime | None


class Inbox(BaseModel):
    """The caller's notifications, newest first, with the unread count."""

    unread: int
    items: list[InboxMessagePublic]


def recipients_of(principal: Principal) -> list[str]:
    """The inbox addresses a caller reads: their own, plus the office's shared inbox for office administrators."""
    out = [principal.sub]
    if principal.is_office:
        out.append(OFFICE_INBOX)
    return out


@router.get("", response_model=Inbox)
async def my_inbox(session: SessionDep, principal: CurrentPrincipal) -> Inbox:
    """The caller's inbox (never anyone else's)."""
    who = recipients_of(principal)
    base = select(InboxMessage).where(InboxMessage.recipient.in_(who), InboxMessage.archived_at.is_(None))
    rows = (await session.execute(base.order_by(InboxMessage.created_at.desc()).limit(100))).scalars().all()
    unread = await session.scalar(
        select(func.count()).select_from(InboxMessage)
        .where(InboxMessage.recipient.in_(who), InboxMessage.read_at.is_(None), InboxMessage.archived_at.is_(None))
    )
    return Inbox(unread=unread or 0, items=[InboxMessagePublic.model_validate(r) for r in rows])
