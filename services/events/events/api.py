"""HTTP routes of the events service."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.auth import Principal, Role, require_roles
from common.errors import Forbidden, NotFound, Unprocessable
from common.service import RuntimeDep, SessionDep
from events.contracts import ActivityCreated, ActivityPayload
from events.models import Activity, Organiser

router = APIRouter(prefix="/activities", tags=["activities"])

Organising = Annotated[Principal, Depends(require_roles(Role.OFFICE_ADMIN, Role.INSTITUTION_ADMIN))]


class ActivityKind(StrEnum):
    """Kinds of activity the office runs (会、展、赛)."""

    CONFERENCE = "conference"
    FORUM = "forum"
    EXHIBITION = "exhibition"
    MATCHMAKING = "matchmaking"
    JOB_FAIR = "job_fair"
    TRAINING_CAMP = "training_camp"
    COMPETITION = "competition"


class ActivityCreate(BaseModel):
    """A new activity, created as a draft."""

    kind: ActivityKind
    title_zh: str = Field(min_length=2, max_length=300)
    title_en: str | None = Field(default=None, max_length=300)
    organiser_id: str
    starts_at: datetime
    ends_at: datetime
    capacity: int | None = Field(default=None, ge=1, le=1_000_000)
    industries: list[str] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _ordered(self):
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class ActivityPublic(BaseModel):
    """An activity as anyone sees it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    title_zh: str
    title_en: str | None
    organiser_id: str
    starts_at: datetime
    ends_at: datetime
    capacity: int | None
    industries: list[str]
    status: str
    version: int


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ActivityPublic)
async def create_activity(body: ActivityCreate, session: SessionDep, runtime: RuntimeDep, actor: Organising):
    """Create a draft activity for an organiser the caller may act for."""
    if not actor.acts_for(body.organiser_id):
        raise Forbidden("you may only organise activities for your own institution")
    async with session.begin():
        if await session.get(Organiser, body.organiser_id) is None:
            raise Unprocessable(f"organiser {body.organiser_id} is not a registered institution (yet)")
        act = Activity(**body.model_dump())
        session.add(act)
        await session.flush()
        await runtime.stager.stage(session, ActivityCreated, key=act.id,
                                   payload=ActivityPayload.model_validate(act, from_attributes=True))
    return act


@router.get("/{activity_id}", response_model=ActivityPublic)
async def get_activity(activity_id: str, session: SessionDep):
    """Read one activity."""
    act = await session.get(Activity, activity_id)
    if act is None:
        raise NotFound(f"no activity with id {activity_id}")
    return act
