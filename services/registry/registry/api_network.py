"""HTTP routes for bases, alliances and the mentor pool."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from common.auth import OptionalPrincipal, Principal, Role, require_roles
from common.service import RuntimeDep, SessionDep
from registry import network
from registry.api import IfMatch
from registry.domain import BaseCategory, BaseType, Industry, MentorTitle, etag, in_scope, mask_id_number
from registry.models import Mentor
from registry.schemas import (
    AllianceCreate,
    AllianceMember,
    AlliancePublic,
    BaseCreate,
    BasePublic,
    BaseUpdate,
    ConsentRecord,
    JoinAnswer,
    MentorCreate,
    MentorPublic,
    MentorUpdate,
)

router = APIRouter()
Editor = Annotated[Principal, Depends(require_roles(Role.OFFICE_ADMIN, Role.INSTITUTION_ADMIN))]


# --- bases -------------------------------------------------------------------------------------------------------

@router.post("/bases", status_code=status.HTTP_201_CREATED, response_model=BasePublic, tags=["bases"])
async def create_base(
    body: BaseCreate, session: SessionDep, runtime: RuntimeDep, actor: Editor, response: Response,
) -> BasePublic:
    """Register a base (the office, or an administrator of a host institution)."""
    base = await network.create_base(session=session, stager=runtime.stager, data=body, actor=actor)
    response.headers["ETag"] = etag(base.version)
    return BasePublic.model_validate(base)


@router.get("/bases", response_model=list[BasePublic], tags=["bases"])
async def list_bases(
    session: SessionDep, base_type: BaseType | None = None, category: BaseCategory | None = None,
    industry: Industry | None = None, host_institution_id: str | None = None,
) -> list[BasePublic]:
    """Bases by type, category, industry or host (public)."""
    bases = await network.list_bases(session=session, base_type=base_type, category=category, industry=industry,
                                     host_institution_id=host_institution_id)
    return [BasePublic.model_validate(b) for b in bases]


@router.get("/bases/{base_id}", response_model=BasePublic, tags=["bases"])
async def get_base(base_id: str, session: SessionDep, response: Response) -> BasePublic:
    """One base (public)."""
    base = await network.get_base(session=session, base_id=base_id)
    response.headers["ETag"] = etag(base.version)
    return BasePublic.model_validate(base)


@router.patch("/bases/{base_id}", response_model=BasePublic, tags=["bases"])
async def update_base(
    base_id: str, body: BaseUpdate, session: SessionDep, runtime: RuntimeDep, actor: Editor, response: Response,
    if_match: IfMatch = None,
) -> BasePublic:
    """Edit a base (If-Match required)."""
    base = await network.update_base(session=session, stager=runtime.stager, base_id=base_id, data=body,
                                     if_match=if_match, actor=actor)
    response.headers["ETag"] = etag(base.version)
    return BasePublic.model_validate(base)


@router.post("/bases/{base_id}/cohosts/{institution_id}/confirm", response_model=BasePublic, tags=["bases"])
async def confirm_cohost(
    base_id: str, institution_id: str, session: SessionDep, runtime: RuntimeDep, actor: Editor,
) -> BasePublic:
    """A named co-host's administrator (or the office) confirms: the institution becomes a host (base.updated)."""
    return BasePublic.model_validate(await network.answer_cohost(
        session=session, stager=runtime.stager, base_id=base_id, institution_id=institution_id, confirm=True,
        actor=actor))


@router.post("/bases/{base_id}/cohosts/{institution_id}/decline", response_model=BasePublic, tags=["bases"])
async def decline_cohost(
    base_id: str, institution_id: str, session: SessionDep, runtime: RuntimeDep, actor: Editor,
) -> BasePublic:
    """A named co-host declines, or a host withdraws the invitation (cohost_declined)."""
    return BasePublic.model_validate(await network.answer_cohost(
        session=session, stager=runtime.stager, base_id=base_id, institution_id=institution_id, confirm=False,
        actor=actor))


@router.post("/bases/{base_id}/close", response_model=BasePublic, tags=["bases"])
async def close_base(base_id: str, session: SessionDep, runtime: RuntimeDep, actor: Editor) -> BasePublic:
    """Close a base."""
    return BasePublic.model_validate(
        await network.close_base(session=session, stager=runtime.stager, base_id=base_id, actor=actor))


# --- alliances ---------------------------------------------------------------------------------------------------

@router.post("/alliances", status_code=status.HTTP_201_CREATED, response_model=AlliancePublic, tags=["alliances"])
async def form_alliance(
    body: AllianceCreate, session: SessionDep, runtime: RuntimeDep, actor: Editor,
) -> AlliancePublic:
    """Form an alliance, community, vocational education group or consortium."""
    return AlliancePublic.model_validate(
        await network.form_alliance(session=session, stager=runtime.stager, data=body, actor=actor))


@router.get("/alliances", response_model=list[AlliancePublic], tags=["alliances"])
async def list_alliances(session: SessionDep, member_institution_id: str | None = None) -> list[AlliancePublic]:
    """Alliances (public), optionally those an institution belongs to."""
    return [AlliancePublic.model_validate(a)
            for a in await network.list_alliances(session=session, member_institution_id=member_institution_id)]


@router.get("/alliances/{alliance_id}", response_model=AlliancePublic, tags=["alliances"])
async def get_alliance(alliance_id: str, session: SessionDep) -> AlliancePublic:
    """One alliance with its members (public)."""
    return AlliancePublic.model_validate(await network.get_alliance(session=session, alliance_id=alliance_id))


@router.post("/alliances/{alliance_id}/members", status_code=status.HTTP_201_CREATED, response_model=AlliancePublic,
             tags=["alliances"], responses={202: {"model": AlliancePublic,
                                                  "description": "a join waiting for the other side"}})
async def add_member(
    alliance_id: str, body: AllianceMember, session: SessionDep, runtime: RuntimeDep, actor: Editor,
    response: Response,
) -> AlliancePublic:
    """Add a member: the office at once (201); the lead's administrator invites and an institution's administrator
    asks to join as a member (202, pending until the other side accepts it at .../join-requests/{id}/accept)."""
    alliance, joined = await network.add_member(
        session=session, stager=runtime.stager, alliance_id=alliance_id, institution_id=body.institution_id,
        role=body.role, actor=actor)
    if not joined:
        response.status_code = status.HTTP_202_ACCEPTED
    return AlliancePublic.model_validate(alliance)


@router.post("/alliances/{alliance_id}/join-requests/{institution_id}/accept", response_model=AlliancePublic,
             tags=["alliances"])
async def accept_join(
    alliance_id: str, institution_id: str, session: SessionDep, runtime: RuntimeDep, actor: Editor,
    body: JoinAnswer | None = None,
) -> AlliancePublic:
    """Accept a pending join: the lead an institution's request (setting its role), the institution the lead's
    invitation; the institution becomes a member (member_joined)."""
    return AlliancePublic.model_validate(await network.answer_join(
        session=session, stager=runtime.stager, alliance_id=alliance_id, institution_id=institution_id, accept=True,
        role=body.role if body else None, actor=actor))


@router.post("/alliances/{alliance_id}/join-requests/{institution_id}/decline", response_model=AlliancePublic,
             tags=["alliances"])
async def decline_join(
    alliance_id: str, institution_id: str, session: SessionDep, runtime: RuntimeDep, actor: Editor,
) -> AlliancePublic:
    """Decline (or withdraw) a pending join (join_declined)."""
    return AlliancePublic.model_validate(await network.answer_join(
        session=session, stager=runtime.stager, alliance_id=alliance_id, institution_id=institution_id, accept=False,
        role=None, actor=actor))


@router.delete("/alliances/{alliance_id}/members/{institution_id}", response_model=AlliancePublic,
               tags=["alliances"])
async def remove_member(
    alliance_id: str, institution_id: str, session: SessionDep, runtime: RuntimeDep, actor: Editor,
) -> AlliancePublic:
    """Remove a member institution."""
    return AlliancePublic.model_validate(await network.remove_member(
        session=session, stager=runtime.stager, alliance_id=alliance_id, institution_id=institution_id, actor=actor))


@router.post("/alliances/{alliance_id}/dissolve", response_model=AlliancePublic, tags=["alliances"])
async def dissolve_alliance(
    alliance_id: str, session: SessionDep, runtime: RuntimeDep, actor: Editor,
) -> AlliancePublic:
    """Dissolve an alliance."""
    return AlliancePublic.model_validate(await network.dissolve_alliance(
        session=session, stager=runtime.stager, alliance_id=alliance_id, actor=actor))


# --- mentors -----------------------------------------------------------------------------------------------------

def present_mentor(mentor: Mentor, viewer: Principal | None) -> MentorPublic:
    """A mentor for a viewer: contact details only for the office and their institution; ID numbers masked."""
    out = MentorPublic.model_validate(mentor)
    out.id_number = mask_id_number(mentor.id_number)
    if not in_scope(viewer, mentor.institution_id):
        out.phone = out.email = out.id_number = None
        out.consent_given_at = None
    return out


@router.post("/mentors", status_code=status.HTTP_201_CREATED, response_model=MentorPublic, tags=["mentors"])
async def propose_mentor(body: MentorCreate, session: SessionDep, actor: Editor) -> MentorPublic:
    """Add a person to the pool; they are listed publicly only once consent is recorded."""
    return present_mentor(await network.propose_mentor(session=session, data=body, actor=actor), actor)


@router.get("/mentors", response_model=list[MentorPublic], tags=["mentors"])
async def list_mentors(
    session: SessionDep, viewer: OptionalPrincipal, institution_id: str | None = None,
    title: MentorTitle | None = None, industry: Industry | None = None,
) -> list[MentorPublic]:
    """The mentor pool: listed (consented) people for everyone, more for the office and their institution."""
    mentors = await network.list_mentors(session=session, viewer=viewer, institution_id=institution_id,
                                         title=title, industry=industry)
    return [present_mentor(m, viewer) for m in mentors]


@router.get("/mentors/{mentor_id}", response_model=MentorPublic, tags=["mentors"])
async def get_mentor(
    mentor_id: str, session: SessionDep, viewer: OptionalPrincipal, response: Response,
) -> MentorPublic:
    """One mentor; unconsented people are visible only to the office and their institution's administrators."""
    mentor = await network.get_mentor(session=session, mentor_id=mentor_id, viewer=viewer)
    response.headers["ETag"] = etag(mentor.version)
    return present_mentor(mentor, viewer)


@router.patch("/mentors/{mentor_id}", response_model=MentorPublic, tags=["mentors"])
async def update_mentor(
    mentor_id: str, body: MentorUpdate, session: SessionDep, runtime: RuntimeDep, actor: Editor, response: Response,
    if_match: IfMatch = None,
) -> MentorPublic:
    """Edit a mentor (If-Match required)."""
    mentor = await network.update_mentor(session=session, stager=runtime.stager, mentor_id=mentor_id, data=body,
                                         if_match=if_match, actor=actor)
    response.headers["ETag"] = etag(mentor.version)
    return present_mentor(mentor, actor)


@router.post("/mentors/{mentor_id}/consent", response_model=MentorPublic, tags=["mentors"])
async def record_consent(
    mentor_id: str, body: ConsentRecord, session: SessionDep, runtime: RuntimeDep, actor: Editor,
) -> MentorPublic:
    """Record the person's consent to be listed (or its withdrawal, which unlists them)."""
    mentor = await network.record_consent(session=session, stager=runtime.stager, mentor_id=mentor_id,
                                          given=body.given, method=body.method, actor=actor)
    return present_mentor(mentor, actor)
