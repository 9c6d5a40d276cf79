"""HTTP routes of the matching service."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from common.errors import NotFound
from common.service import SessionDep
from matching.models import InstitutionView

router = APIRouter(prefix="/institutions", tags=["institutions"])


class InstitutionViewPublic(BaseModel):
    """An institution as matching knows it (from the registry's events)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    name_zh: str
    district: str
    industries: list[str]
    keywords: list[str]
    status: str
    successor_id: str | None
    version: int


@router.get("/{institution_id}", response_model=InstitutionViewPublic)
async def get_institution(institution_id: str, session: SessionDep) -> InstitutionView:
    """Matching's view of one institution."""
    view = await session.get(InstitutionView, institution_id)
    if view is None:
        raise NotFound(f"matching knows no institution {institution_id} (yet)")
    return view


@router.get("", response_model=list[InstitutionViewPublic])
async def list_institutions(session: SessionDep, district: str | None = None) -> list[InstitutionView]:
    """Matching's view of the institutions, optionally by district."""
    stmt = select(InstitutionView).order_by(InstitutionView.name_zh, InstitutionView.id).limit(500)
    if district:
        stmt = stmt.where(InstitutionView.district == district)
    return list((await session.execute(stmt)).scalars())
