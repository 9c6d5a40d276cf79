"""HTTP routes for institutions: parse, call a use case, shape the response."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status

from common.auth import CurrentPrincipal, OptionalPrincipal, Principal, Role, require_roles
from common.errors import Forbidden, Unprocessable
from common.service import RuntimeDep, SessionDep
from common.values import UtcInstant
from registry import service, transfer, uscc_changes
from registry.domain import (
    OFFICE_ACTOR,
    PERSONAL_FIELDS,
    District,
    Industry,
    InstitutionKind,
    InstitutionStatus,
    entry_by_office,
    etag,
)
from registry.models import Institution
from registry.schemas import (
    Decision,
    ImportReport,
    InstitutionCreate,
    InstitutionPublic,
    InstitutionUpdate,
    MergeRequest,
    Page,
    RevisionPublic,
    StatusChange,
    UsccChangeCreate,
    UsccChangePublic,
)

router = APIRouter(prefix="/institutions", tags=["institutions"])

RegistryWriter = Annotated[Principal, Depends(require_roles(Role.OFFICE_ADMIN, Role.INTEGRATION))]
Office = Annotated[Principal, Depends(require_roles(Role.OFFICE_ADMIN))]
Editor = Annotated[Principal, Depends(require_roles(Role.OFFICE_ADMIN, Role.INSTITUTION_ADMIN, Role.INTEGRATION))]
IfMatch = Annotated[str | None, Header(alias="If-Match", description="the ETag of the version you edited")]


def may_see_personal(viewer: Principal | None, institution_id: str) -> bool:
    """The office and the institution's own administrators see its contact person; nobody else does."""
    return viewer is not None and (viewer.is_office or (
        viewer.institution_id == institution_id and viewer.has(Role.INSTITUTION_ADMIN)))


def present(inst: Institution | dict[str, Any], viewer: Principal | None) -> InstitutionPublic:
    """Shape an institution (a row or an as-of snapshot) for a viewer, hiding personal data from others."""
    out = InstitutionPublic.model_validate(inst)
    if not may_see_personal(viewer, out.id):
        for f in PERSONAL_FIELDS:
            setattr(out, f, None)
    return out


@router.post("", status_code=status.HTTP_201_CREATED, response_model=InstitutionPublic)
async def register_institution(
    body: InstitutionCreate, session: SessionDep, runtime: RuntimeDep, actor: RegistryWriter, response: Response,
) -> InstitutionPublic:
    """Register an institution (office administrators and integrations); duplicates by USCC or school code get 409."""
    row = await service.register_institution(session=session, stager=runtime.stager, data=body, actor=actor)
    response.headers["Location"] = f"/institutions/{row['id']}"
    response.headers["ETag"] = etag(row["version"])
    return present(row, actor)


@router.get("", response_model=Page[InstitutionPublic])
async def list_institutions(
    session: SessionDep, viewer: OptionalPrincipal,
    kind: InstitutionKind | None = None, district: District | None = None, industry: Industry | None = None,
    status_: Annotated[InstitutionStatus | None, Query(alias="status")] = None,
    certification_status: Annotated[str | None, Query(max_length=20)] = None,
    q: Annotated[str | None, Query(max_length=100, description="substring of the Chinese (or English) name")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Page[InstitutionPublic]:
    """Search institutions by kind, district, industry, status, certification and name; stable cursor pages."""
    items, nxt = await service.list_institutions(
        session=session, kind=kind, district=district, industry=industry, status=status_,
        certification_status=certification_status, q=q, limit=limit, cursor=cursor,
    )
    return Page[InstitutionPublic](items=[present(i, viewer) for i in items], next_cursor=nxt)


@router.get("/export", response_class=Response, responses={200: {"content": {
    "text/csv": {}, transfer.XLSX_TYPE: {}}}})
async def export_institutions(
    session: SessionDep, viewer: OptionalPrincipal,
    format: Literal["csv", "xlsx"] = "csv",
    kind: InstitutionKind | None = None, district: District | None = None, industry: Industry | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """Export the (filtered) institutions as CSV or XLSX; contact columns only for the office."""
    body, media = await transfer.export_institutions(
        session=session, fmt=format, include_personal=viewer is not None and viewer.is_office,
        kind=kind, district=district, industry=industry, q=q,
    )
    return Response(body, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="institutions.{format}"'})


@router.post("/import", response_model=ImportReport)
async def import_institutions(
    request: Request, session: SessionDep, runtime: RuntimeDep, actor: RegistryWriter,
    atomic: Annotated[bool, Query(description="true (default): apply nothing if any row is invalid or a duplicate; "
                                              "false: apply the acceptable rows and report the rest")] = True,
    mode: Annotated[transfer.ImportMode, Query(description="rows naming an existing record (by id, USCC or school "
                                                           "code) that differ from it: create = reported as "
                                                           "duplicates, upsert = applied as updates")] = "create",
    format: Annotated[Literal["csv", "xlsx"] | None, Query(description="default: from Content-Type")] = None,
) -> ImportReport:
    """Import a CSV or XLSX sheet (raw request body; an export re-imports unchanged) with a per-row report; all or
    nothing unless `atomic=false`."""
    fmt = format or transfer.format_from_content_type(request.headers.get("content-type", ""))
    report = await transfer.import_institutions(
        session=session, stager=runtime.stager, raw=await request.body(), fmt=fmt, atomic=atomic, mode=mode,
        actor=actor,
    )
    if not report.applied:
        raise Unprocessable(
            f"{report.rejected} of {report.total} rows are invalid or duplicates and the import is all or nothing: "
            "nothing was applied (atomic=false applies the acceptable rows)",
            report=report.model_dump(mode="json"),
        )
    return report


@router.get("/uscc-change-requests", response_model=list[UsccChangePublic])
async def uscc_change_work_list(
    session: SessionDep, actor: Office, status_: Annotated[Literal["pending", "approved", "declined"] | None,
                                                           Query(alias="status")] = "pending",
) -> list[UsccChangePublic]:
    """The office's work list of USCC change requests (pending by default)."""
    reqs = await uscc_changes.list_requests(session=session, institution_id=None, status=status_, viewer=actor)
    return [UsccChangePublic.model_validate(r) for r in reqs]


@router.get("/{institution_id}", response_model=InstitutionPublic)
async def get_institution(
    institution_id: str, session: SessionDep, viewer: OptionalPrincipal, response: Response,
    as_of: Annotated[UtcInstant | None, Query(description="read the record as it was at this time (ISO 8601)")] = None,
) -> InstitutionPublic:
    """Read one institution (public fields for everyone), optionally as it was at a past time."""
    if as_of is not None:
        snap = await service.institution_as_of(session=session, institution_id=institution_id, at=as_of)
        response.headers["ETag"] = etag(snap["version"])
        return present(snap, viewer)
    row = await service.read_institution(session=session, institution_id=institution_id)
    response.headers["ETag"] = etag(row["version"])
    return present(row, viewer)


@router.patch("/{institution_id}", response_model=InstitutionPublic)
async def update_institution(
    institution_id: str, body: InstitutionUpdate, session: SessionDep, runtime: RuntimeDep, actor: Editor,
    response: Response, if_match: IfMatch = None,
) -> InstitutionPublic:
    """Edit an institution (the office, or its own administrator); needs If-Match, a stale one gets 412.

    Of simultaneous edits naming the same version one is applied (200) and every other answers 412, never 409.
    """
    inst = await service.update_institution(
        session=session, stager=runtime.stager, institution_id=institution_id, data=body, if_match=if_match,
        actor=actor,
    )
    response.headers["ETag"] = etag(inst.version)
    return present(inst, actor)


@router.post("/{institution_id}/uscc-change-requests", status_code=status.HTTP_201_CREATED,
             response_model=UsccChangePublic)
async def request_uscc_change(
    institution_id: str, body: UsccChangeCreate, session: SessionDep, runtime: RuntimeDep, actor: Editor,
) -> UsccChangePublic:
    """Ask the office to change the institution's registered USCC (its administrators); the office decides."""
    return UsccChangePublic.model_validate(await uscc_changes.request_change(
        session=session, stager=runtime.stager, institution_id=institution_id, uscc=body.uscc, reason=body.reason,
        actor=actor))


@router.get("/{institution_id}/uscc-change-requests", response_model=list[UsccChangePublic])
async def list_uscc_changes(
    institution_id: str, session: SessionDep, viewer: CurrentPrincipal,
) -> list[UsccChangePublic]:
    """The institution's USCC change requests (the office and its administrators)."""
    reqs = await uscc_changes.list_requests(session=session, institution_id=institution_id, status=None,
                                            viewer=viewer)
    return [UsccChangePublic.model_validate(r) for r in reqs]


@router.post("/{institution_id}/uscc-change-requests/{request_id}/approve", response_model=UsccChangePublic)
async def approve_uscc_change(
    institution_id: str, request_id: str, session: SessionDep, runtime: RuntimeDep, actor: Office,
    body: Decision | None = None,
) -> UsccChangePublic:
    """Approve a USCC change (office): the institution's USCC changes (a new version and its updated event)."""
    return UsccChangePublic.model_validate(await uscc_changes.decide(
        session=session, stager=runtime.stager, institution_id=institution_id, request_id=request_id, approve=True,
        note=body.note if body else None, actor=actor))


@router.post("/{institution_id}/uscc-change-requests/{request_id}/decline", response_model=UsccChangePublic)
async def decline_uscc_change(
    institution_id: str, request_id: str, session: SessionDep, runtime: RuntimeDep, actor: Office,
    body: Decision | None = None,
) -> UsccChangePublic:
    """Decline a USCC change (office), with a note the institution reads."""
    return UsccChangePublic.model_validate(await uscc_changes.decide(
        session=session, stager=runtime.stager, institution_id=institution_id, request_id=request_id, approve=False,
        note=body.note if body else None, actor=actor))


@router.get("/{institution_id}/history", response_model=list[RevisionPublic])
async def institution_history(
    institution_id: str, session: SessionDep, viewer: CurrentPrincipal,
) -> list[RevisionPublic]:
    """Every version of an institution: who, when, what changed (the office and the institution's own admins)."""
    if not viewer.acts_for(institution_id):
        raise Forbidden("the change history is visible to the office and the institution's own administrators")
    revisions = [RevisionPublic.model_validate(r)
                 for r in await service.list_revisions(session=session, institution_id=institution_id)]
    if not viewer.is_office:  # office staff are named only to the office
        for r in revisions:
            if entry_by_office({"actor": r.actor}):
                r.actor = OFFICE_ACTOR
    return revisions


@router.post("/{institution_id}/status", response_model=InstitutionPublic)
async def change_status(
    institution_id: str, body: StatusChange, session: SessionDep, runtime: RuntimeDep, actor: Office,
    response: Response, if_match: IfMatch = None,
) -> InstitutionPublic:
    """Set an institution active, inactive or withdrawn (office only)."""
    inst = await service.change_status(
        session=session, stager=runtime.stager, institution_id=institution_id, status=body.status,
        reason=body.reason, if_match=if_match, actor=actor,
    )
    response.headers["ETag"] = etag(inst.version)
    return present(inst, actor)


@router.post("/{institution_id}/merge", response_model=InstitutionPublic)
async def merge_institution(
    institution_id: str, body: MergeRequest, session: SessionDep, runtime: RuntimeDep, actor: Office,
    response: Response, if_match: IfMatch = None,
) -> InstitutionPublic:
    """Withdraw this duplicate into `successor_id` (office only); the merged event names the successor."""
    inst = await service.merge_institutions(
        session=session, stager=runtime.stager, institution_id=institution_id, successor_id=body.successor_id,
        reason=body.reason, if_match=if_match, actor=actor,
    )
    response.headers["ETag"] = etag(inst.version)
    return present(inst, actor)
