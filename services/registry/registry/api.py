"""HTTP routes of the registry: parse, call a use case, shape the response."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from common.auth import OptionalPrincipal, Principal, Role, require_roles
from common.service import RuntimeDep, SessionDep
from registry import service
from registry.models import Institution
from registry.schemas import InstitutionCreate, InstitutionPublic, Page

router = APIRouter(prefix="/institutions", tags=["institutions"])

RegistryWriter = Annotated[Principal, Depends(require_roles(Role.OFFICE_ADMIN, Role.INTEGRATION))]


def present(inst: Institution, viewer: Principal | None) -> InstitutionPublic:
    """Shape an institution for a viewer: contact details only for the office and the institution's own admins."""
    out = InstitutionPublic.model_validate(inst)
    if viewer is None or not (viewer.is_office or viewer.institution_id == inst.id):
        out.contact_name = out.contact_phone = out.contact_email = None
    return out


@router.post("", status_code=status.HTTP_201_CREATED, response_model=InstitutionPublic)
async def register_institution(
    body: InstitutionCreate, session: SessionDep, runtime: RuntimeDep, actor: RegistryWriter, response: Response,
) -> InstitutionPublic:
    """Register an institution (office administrators and integrations)."""
    inst = await service.register_institution(session=session, stager=runtime.stager, data=body, actor=actor)
    response.headers["Location"] = f"/institutions/{inst.id}"
    response.headers["ETag"] = f'"{inst.version}"'
    return present(inst, actor)


@router.get("/{institution_id}", response_model=InstitutionPublic)
async def get_institution(
    institution_id: str, session: SessionDep, viewer: OptionalPrincipal, response: Response,
) -> InstitutionPublic:
    """Read one institution; public fields for everyone."""
    inst = await service.get_institution(session=session, institution_id=institution_id)
    response.headers["ETag"] = f'"{inst.version}"'
    return present(inst, viewer)


@router.get("", response_model=Page[InstitutionPublic])
async def list_institutions(
    session: SessionDep, viewer: OptionalPrincipal,
    kind: str | None = None, district: str | None = None,
    q: Annotated[str | None, Query(max_length=100, description="substring of the Chinese name")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: str | None = None,
) -> Page[InstitutionPublic]:
    """Search institutions by kind, district and name; cursor pagination in a stable order."""
    items, nxt = await service.list_institutions(
        session=session, kind=kind, district=district, q=q, limit=limit, cursor=cursor,
    )
    return Page[InstitutionPublic](items=[present(i, viewer) for i in items], next_cursor=nxt)
