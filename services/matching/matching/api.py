"""HTTP routes of the matching service: parse, call a use case, shape the response."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select, tuple_

from common.auth import CurrentPrincipal, OptionalPrincipal, Principal, Role, require_roles
from common.errors import Forbidden, NotFound
from common.paging import Cursor, decode_cursor, encode_cursor
from common.service import RuntimeDep, SessionDep
from matching import service
from matching.domain import OpportunityAction, resolve_successor
from matching.models import InstitutionView, Opportunity, PlacementRound
from matching.schemas import (
    MatchAction,
    MatchCreate,
    MatchPublic,
    OpportunityCreate,
    OpportunityPublic,
    OpportunityUpdate,
    OutcomeRow,
    Page,
    ParticipantResult,
    PlacementRoundCreate,
    PlacementRoundPublic,
    ProgressNote,
    RecommendationList,
)

Writer = Annotated[Principal, Depends(require_roles(Role.OFFICE_ADMIN, Role.INSTITUTION_ADMIN, Role.INTEGRATION))]
Office = Annotated[Principal, Depends(require_roles(Role.OFFICE_ADMIN))]

institutions = APIRouter(prefix="/institutions", tags=["institutions"])
opportunities = APIRouter(prefix="/opportunities", tags=["opportunities"])
matches = APIRouter(prefix="/matches", tags=["matches"])
reports = APIRouter(tags=["tracking and reports"])
rounds = APIRouter(prefix="/placement-rounds", tags=["placement"])


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
    certified: bool
    version: int
    followed_from: str | None = None


class InstitutionPage(BaseModel):
    """A page of institutions and the cursor of the next one."""

    items: list[InstitutionViewPublic]
    next_cursor: str | None = None


@institutions.get("/{institution_id}", response_model=InstitutionViewPublic)
async def get_institution(institution_id: str, session: SessionDep) -> dict:
    """Matching's view of one institution; a merged one answers with its successor (`followed_from` set)."""
    rows = await session.execute(select(InstitutionView.id, InstitutionView.successor_id))
    target = resolve_successor(institution_id, dict(rows.all()))
    view = await session.get(InstitutionView, target)
    if view is None:
        raise NotFound(f"matching knows no institution {institution_id} (yet)")
    out = InstitutionViewPublic.model_validate(view).model_dump()
    out["followed_from"] = institution_id if target != institution_id else None
    return out


@institutions.get("", response_model=InstitutionPage)
async def list_institutions(
    session: SessionDep, district: str | None = None, limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> InstitutionPage:
    """Matching's view of the institutions by name, optionally by district, in cursor pages."""
    stmt = select(InstitutionView).order_by(InstitutionView.name_zh, InstitutionView.id).limit(limit + 1)
    if district:
        stmt = stmt.where(InstitutionView.district == district)
    if cursor:
        name, id_ = decode_cursor(cursor, str, str)
        stmt = stmt.where(tuple_(InstitutionView.name_zh, InstitutionView.id) > tuple_(name, id_))
    rows = list((await session.execute(stmt)).scalars())
    nxt = encode_cursor(rows[limit - 1].name_zh, rows[limit - 1].id) if len(rows) > limit else None
    return InstitutionPage(items=[InstitutionViewPublic.model_validate(r) for r in rows[:limit]], next_cursor=nxt)


def present(opp: Opportunity, viewer: Principal | None, taken: int = 0) -> OpportunityPublic:
    """An opportunity for a viewer: contact details only for its institution and the office."""
    out = OpportunityPublic.model_validate(opp)
    out.seats_taken = taken
    if viewer is None or not viewer.acts_for(opp.institution_id):
        out.contact_name = out.contact_phone = out.contact_email = None
    return out


@opportunities.post("", status_code=status.HTTP_201_CREATED, response_model=OpportunityPublic)
async def create_opportunity(body: OpportunityCreate, session: SessionDep, runtime: RuntimeDep,
                             actor: Writer) -> OpportunityPublic:
    """Post an opportunity or an offer for an institution (its administrator or the office)."""
    opp = await service.create_opportunity(session=session, stager=runtime.stager, data=body, actor=actor)
    return present(opp, actor)


@opportunities.get("", response_model=Page)
async def list_opportunities(
    session: SessionDep, viewer: OptionalPrincipal, status: str | None = None, kind: str | None = None,
    direction: str | None = None, institution_id: str | None = None, district: str | None = None,
    industry: str | None = None, limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Page:
    """Opportunities and offers by status, kind, direction, institution, district or industry."""
    rows, total = await service.list_opportunities(
        session=session, status=status, kind=kind, direction=direction, institution_id=institution_id,
        district=district, industry=industry, limit=limit, offset=offset)
    taken = await service.seats_taken(session=session, opportunity_ids=[o.id for o in rows])
    return Page(items=[present(o, viewer, taken.get(o.id, 0)) for o in rows], total=total)


@opportunities.get("/{opportunity_id}", response_model=OpportunityPublic)
async def get_opportunity(opportunity_id: str, session: SessionDep, viewer: OptionalPrincipal) -> OpportunityPublic:
    """One opportunity or offer."""
    opp = await service.get_opportunity(session=session, opportunity_id=opportunity_id)
    taken = await service.seats_taken(session=session, opportunity_ids=[opp.id])
    return present(opp, viewer, taken.get(opp.id, 0))


@opportunities.patch("/{opportunity_id}", response_model=OpportunityPublic)
async def update_opportunity(opportunity_id: str, body: OpportunityUpdate, session: SessionDep, runtime: RuntimeDep,
                             actor: Writer) -> OpportunityPublic:
    """Edit a draft or open opportunity (its institution or the office)."""
    opp = await service.update_opportunity(session=session, stager=runtime.stager, opportunity_id=opportunity_id,
                                           data=body, actor=actor)
    return present(opp, actor)


@opportunities.post("/{opportunity_id}/{action}", response_model=OpportunityPublic)
async def transition_opportunity(opportunity_id: str, action: Literal["open", "close"], session: SessionDep,
                                 runtime: RuntimeDep, actor: Writer) -> OpportunityPublic:
    """Open a draft, or close an opportunity; a refused transition is 409 naming the allowed ones.

    Simultaneous transitions take turns on the opportunity's row lock: the first is applied and published, a repeat
    (closing a closed opportunity) answers 409.
    """
    opp = await service.transition_opportunity(session=session, stager=runtime.stager,
                                               opportunity_id=opportunity_id, action=OpportunityAction(action),
                                               actor=actor)
    return present(opp, actor)


@opportunities.get("/{opportunity_id}/recommendations", response_model=RecommendationList)
async def recommendations(opportunity_id: str, session: SessionDep,
                          limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict:
    """Institutions and offers ranked for an opportunity, each with its score components and reasons."""
    return await service.recommend(session=session, opportunity_id=opportunity_id, limit=limit)


@matches.post("", status_code=status.HTTP_201_CREATED, response_model=MatchPublic)
async def propose_match(body: MatchCreate, session: SessionDep, runtime: RuntimeDep, actor: Writer):
    """Express interest in collaborating on an open opportunity (expires unanswered; pending proposals are capped)."""
    s = runtime.settings
    return await service.propose_match(session=session, stager=runtime.stager, data=body, actor=actor,
                                       ttl=timedelta(days=s.match_ttl_days), pending_cap=s.pending_match_cap)


@matches.get("", response_model=list[MatchPublic])
async def list_matches(session: SessionDep, viewer: CurrentPrincipal, status: str | None = None,
                       opportunity_id: str | None = None):
    """Matches of the caller's institution (all of them for the office)."""
    return await service.list_matches(session=session, viewer=viewer, status=status, opportunity_id=opportunity_id)


@matches.get("/{match_id}", response_model=MatchPublic)
async def get_match(match_id: str, session: SessionDep, viewer: CurrentPrincipal):
    """One match (its two institutions and the office)."""
    return await service.get_match(session=session, match_id=match_id, viewer=viewer)


@matches.post("/{match_id}/notes", response_model=MatchPublic)
async def add_progress_note(match_id: str, body: ProgressNote, session: SessionDep, actor: Writer):
    """Add a note to the match's progress log (either side's administrators or the office; both sides read it)."""
    return await service.add_progress_note(session=session, match_id=match_id, note=body.note, actor=actor)


@matches.post("/{match_id}/{action}", response_model=MatchPublic)
async def act_on_match(
    match_id: str, action: Literal["accept", "decline", "withdraw", "agree", "start", "complete", "cancel"],
    session: SessionDep, runtime: RuntimeDep, actor: Writer, body: MatchAction | None = None,
):
    """Move a match on: accept/decline (recipient), withdraw (proposer), agree/start/complete/cancel (either side);
    the step and its note join the progress log. Outsiders get 404, as on GET.

    A repeat of the action that brought the match to its status (accepting an accepted match, also when sent several
    times at once) answers 200 with the match as it is and publishes nothing; any other action the status does not
    allow answers 409 naming the allowed ones.
    """
    outcomes = body.outcomes.model_dump() if body and body.outcomes else None
    return await service.act_on_match(session=session, stager=runtime.stager, match_id=match_id, action=action,
                                      actor=actor, outcomes=outcomes, note=body.note if body else "")


@reports.post("/maintenance/expire", tags=["operations"])
async def expire_now(runtime: RuntimeDep, _office: Office) -> dict[str, int]:
    """Expire due proposals and opportunities now (the sweeper also does this periodically)."""
    return await service.expire_due(sessions=runtime.sessions, stager=runtime.stager)


@reports.get("/outcomes", response_model=list[OutcomeRow])
async def outcomes(session: SessionDep, by: Literal["institution", "industry", "district"] = "institution",
                   year: Annotated[int | None, Query(ge=2000, le=2100)] = None) -> list[dict]:
    """Collaboration outcome figures per institution (merged ones counted under successors), industry or district."""
    return await service.outcome_figures(session=session, by=by, year=year)


@reports.get("/reports/supply-demand", responses={200: {"content": {"text/csv": {}}}})
async def supply_demand(session: SessionDep, year: Annotated[int, Query(ge=2000, le=2100)],
                        format: Literal["json", "csv"] = "json"):
    """The yearly talent supply-demand report by industry and district, as JSON or CSV."""
    report = await service.supply_demand_report(session=session, year=year)
    if format == "csv":
        return Response(service.report_csv(report), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="supply-demand-{year}.csv"'})
    return report


def round_public(rnd: PlacementRound, viewer: Principal | None) -> dict:
    """A round's summary; participants' lists and the full result only for the office."""
    office = viewer is not None and viewer.is_office
    return {
        "id": rnd.id, "name": rnd.name, "kind": rnd.kind, "seed": rnd.seed, "status": rnd.status,
        "version": rnd.version, "created_at": rnd.created_at, "published_at": rnd.published_at,
        "positions": len(rnd.problem["positions"]), "participants": len(rnd.problem["participants"]),
        "placed": len(rnd.result["assignments"]) if rnd.result else None,
        "unplaced": len(rnd.result["unplaced"]) if rnd.result else None,
        "problem": rnd.problem if office else None, "result": rnd.result if office else None,
    }


@rounds.post("", status_code=status.HTTP_201_CREATED, response_model=PlacementRoundPublic)
async def create_round(body: PlacementRoundCreate, session: SessionDep, actor: Office) -> dict:
    """Set up a placement round (the office); the lottery seed is published with it."""
    return round_public(await service.create_round(session=session, data=body, actor=actor), actor)


@rounds.get("/{round_id}", response_model=PlacementRoundPublic)
async def get_round(round_id: str, session: SessionDep, viewer: OptionalPrincipal) -> dict:
    """A placement round: seed and counts for everyone, lists and results for the office."""
    return round_public(await service.get_round(session=session, round_id=round_id), viewer)


@rounds.post("/{round_id}/run", response_model=PlacementRoundPublic)
async def run_round(round_id: str, session: SessionDep, runtime: RuntimeDep, actor: Office) -> dict:
    """Solve the round (applicant-proposing deferred acceptance) and publish every participant's result.

    A round runs once: a repeat (also several at once) answers 409 and publishes nothing.
    """
    return round_public(await service.run_round(session=session, stager=runtime.stager, round_id=round_id), actor)


@rounds.get("/{round_id}/participants/{participant_id}", response_model=ParticipantResult)
async def participant_result(round_id: str, participant_id: str, session: SessionDep,
                             viewer: CurrentPrincipal) -> dict:
    """A participant's placement, or why they were not placed (the participant themself, or the office)."""
    if not viewer.is_office and viewer.sub != participant_id:
        raise Forbidden("only the participant and the office may see a participant's result")
    rnd = await service.get_round(session=session, round_id=round_id)
    return service.participant_result(rnd, participant_id)


routers = [institutions, opportunities, matches, reports, rounds]
