"""HTTP routes for certified industry-education integration enterprises: batches, files, the public list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from common.auth import CurrentPrincipal, Principal, Role, require_roles
from common.db import utcnow
from common.errors import Forbidden
from common.service import RuntimeDep, SessionDep
from registry import certification
from registry.domain import (
    EVERY_INSTITUTION,
    CertStatus,
    allowed_cert_actions,
    certification_history_for,
    institution_scope,
)
from registry.models import Certification
from registry.schemas import (
    BatchCreate,
    BatchPublic,
    CertificationPublic,
    CertificationStep,
    CertifiedEnterprise,
    PoolEntry,
)

router = APIRouter(tags=["certification"])
Office = Annotated[Principal, Depends(require_roles(Role.OFFICE_ADMIN))]
Applicant = Annotated[Principal, Depends(require_roles(Role.OFFICE_ADMIN, Role.INSTITUTION_ADMIN))]


def present(cert: Certification, viewer: Principal) -> CertificationPublic:
    """A certification file with the actions its status allows; office staff named only to the office."""
    out = CertificationPublic.model_validate(cert)
    out.allowed_actions = allowed_cert_actions(cert.status)
    out.history = certification_history_for(viewer, cert.history)
    return out


@router.post("/certification-batches", status_code=status.HTTP_201_CREATED, response_model=BatchPublic)
async def open_batch(body: BatchCreate, session: SessionDep, actor: Office) -> BatchPublic:
    """Open a yearly certification batch (office)."""
    batch = await certification.create_batch(session=session, name=body.name, year=body.year,
                                             objection_window_days=body.objection_window_days)
    return BatchPublic.model_validate(batch)


@router.get("/certification-batches", response_model=list[BatchPublic])
async def list_batches(session: SessionDep) -> list[BatchPublic]:
    """Every certification batch (public)."""
    return [BatchPublic.model_validate(b) for b in await certification.list_batches(session=session)]


@router.post("/certification-batches/{batch_id}/close", response_model=BatchPublic)
async def close_batch(batch_id: str, session: SessionDep, actor: Office) -> BatchPublic:
    """Close a batch to new applications (office)."""
    return BatchPublic.model_validate(await certification.close_batch(session=session, batch_id=batch_id))


@router.post("/certifications", status_code=status.HTTP_201_CREATED, response_model=CertificationPublic)
async def enter_pool(
    body: PoolEntry, session: SessionDep, runtime: RuntimeDep, actor: Applicant, response: Response,
) -> CertificationPublic:
    """Put an enterprise into the cultivation pool: opens its certification file."""
    cert = await certification.enter_pool(session=session, stager=runtime.stager,
                                          institution_id=body.institution_id, actor=actor)
    response.headers["Location"] = f"/certifications/{cert.id}"
    return present(cert, actor)


@router.get("/certifications", response_model=list[CertificationPublic])
async def list_certifications(
    session: SessionDep, actor: CurrentPrincipal,
    status_: Annotated[CertStatus | None, Query(alias="status")] = None,
    batch_id: str | None = None, institution_id: str | None = None,
) -> list[CertificationPublic]:
    """Certification files within the caller's scope (the rule GET /certifications/{id} follows): all for the office,
    one's own for an enterprise's administrators; members and judges read none."""
    scope = institution_scope(actor)
    if scope is None:
        raise Forbidden("only the office and enterprises' administrators may read certification files")
    if scope != EVERY_INSTITUTION:
        if institution_id not in (None, scope):
            return []
        institution_id = scope
    certs = await certification.list_certifications(session=session, status=status_, batch_id=batch_id,
                                                    institution_id=institution_id)
    return [present(c, actor) for c in certs]


@router.get("/certifications/{certification_id}", response_model=CertificationPublic)
async def get_certification(certification_id: str, session: SessionDep, actor: CurrentPrincipal) -> CertificationPublic:
    """One certification file (the office, or the enterprise's own administrators; 404 for everyone else)."""
    cert = await certification.get_certification(session=session, certification_id=certification_id, viewer=actor)
    return present(cert, actor)


@router.post("/certifications/{certification_id}/steps", response_model=CertificationPublic)
async def take_step(
    certification_id: str, body: CertificationStep, session: SessionDep, runtime: RuntimeDep, actor: CurrentPrincipal,
) -> CertificationPublic:
    """Apply a lifecycle action (apply, approve, reject, certify, announce, object, ..., withdraw, revoke).

    Simultaneous steps take turns on the file's row lock; each is judged against the status the one before left, so
    of conflicting steps sent at once one is applied and the others answer 409 naming the allowed actions.
    """
    cert = await certification.step(
        session=session, stager=runtime.stager, certification_id=certification_id, action=body.action,
        batch_id=body.batch_id, note=body.note, actor=actor,
    )
    return present(cert, actor)


@router.get("/certified-enterprises", response_model=list[CertifiedEnterprise])
async def certified_enterprises(
    session: SessionDep, year: Annotated[int | None, Query(ge=2019, le=2100, description="a batch's year")] = None,
    batch_id: Annotated[str | None, Query(max_length=64)] = None,
) -> list[CertifiedEnterprise]:
    """The public list of certified industry-education integration enterprises (no login needed)."""
    now = utcnow()
    rows = await certification.public_list(session=session, year=year, batch_id=batch_id)
    return [
        CertifiedEnterprise(
            institution_id=inst.id, enterprise_name=cert.enterprise_name, uscc=inst.uscc, district=inst.district,
            industries=inst.industries, batch_name=batch.name if batch else None, year=batch.year if batch else None,
            status=cert.status, announced_at=cert.announced_at, objection_deadline=cert.objection_deadline,
            objection_window_open=bool(cert.objection_deadline and now <= cert.objection_deadline),
        )
        for cert, inst, batch in rows
    ]
