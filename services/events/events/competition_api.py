"""HTTP routes for competitions: tracks, teams, submissions, judging, scoreboard, results and open data."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from common.auth import CurrentPrincipal, OptionalPrincipal, Principal, Role, require_roles
from common.service import SessionDep
from events import competitions
from events.api import ClockDep, RuntimeDep
from events.domain import AwardTier
from events.models import Registration, Team
from events.schemas import Page
from events.schemas_competition import (
    CompetitionState,
    JudgeAssign,
    JudgePublic,
    MemberPublic,
    ResultsPublish,
    ScoreCreate,
    ScorePublic,
    SubmissionCreate,
    SubmissionPublic,
    TeamCreate,
    TeamJoin,
    TeamPublic,
    TrackCreate,
    TrackPublic,
)

router = APIRouter(tags=["competitions"])

Organising = Annotated[Principal, Depends(require_roles(Role.OFFICE_ADMIN, Role.INSTITUTION_ADMIN))]
Judging = Annotated[Principal, Depends(require_roles(Role.JUDGE))]


async def present_team(session, team: Team, inside: bool) -> TeamPublic:
    """Shape a team: join code, captain, members and registration only for insiders."""
    out = TeamPublic.model_validate(team)
    if inside:
        out.members = [MemberPublic.model_validate(m) for m in await competitions.team_members(
            session=session, team_id=team.id)]
        reg = await session.get(Registration, team.registration_id) if team.registration_id else None
        out.registration_status = reg.status if reg else None
    else:
        out.captain_id = out.join_code = out.registration_id = None
    return out


@router.post("/activities/{activity_id}/tracks", status_code=status.HTTP_201_CREATED, response_model=TrackPublic)
async def add_track(activity_id: str, body: TrackCreate, session: SessionDep, actor: Organising):
    """Add a track (division) with team sizes and a weighted rubric."""
    return await competitions.add_track(session=session, activity_id=activity_id, data=body, actor=actor)


@router.get("/activities/{activity_id}/tracks", response_model=Page[TrackPublic])
async def list_tracks(activity_id: str, session: SessionDep, viewer: OptionalPrincipal):
    """A competition's tracks and rubrics."""
    return Page[TrackPublic](items=await competitions.list_tracks(session=session, activity_id=activity_id,
                                                                  viewer=viewer))


@router.post("/activities/{activity_id}/teams", status_code=status.HTTP_201_CREATED, response_model=TeamPublic)
async def create_team(activity_id: str, body: TeamCreate, session: SessionDep, runtime: RuntimeDep,
                      actor: CurrentPrincipal, clock: ClockDep):
    """Form a team (you are its captain); it is registered, or waitlisted when the competition is full."""
    team, _ = await competitions.create_team(session=session, stager=runtime.stager, activity_id=activity_id,
                                             data=body, actor=actor, now=clock.now())
    return await present_team(session, team, inside=True)


@router.get("/activities/{activity_id}/teams", response_model=Page[TeamPublic])
async def list_teams(activity_id: str, session: SessionDep, viewer: OptionalPrincipal):
    """A competition's teams (names, tracks, institutions)."""
    teams = await competitions.list_teams(session=session, activity_id=activity_id, viewer=viewer)
    return Page[TeamPublic](items=[await present_team(session, t, inside=False) for t in teams])


@router.post("/teams/join", response_model=TeamPublic)
async def join_team(body: TeamJoin, session: SessionDep, actor: CurrentPrincipal):
    """Join a team with its join code (within the track's size cap).

    A full team answers 409 (of N members joining at once where k places are left, k join); joining a team one is
    already in answers 200 with the team; being in another team of the competition answers 409.
    """
    team = await competitions.join_team(session=session, join_code=body.join_code, actor=actor,
                                        display_name=body.display_name)
    return await present_team(session, team, inside=True)


@router.get("/teams/{team_id}", response_model=TeamPublic)
async def get_team(team_id: str, session: SessionDep, viewer: OptionalPrincipal):
    """A team; members and organisers also see its join code and members."""
    team, inside = await competitions.get_team(session=session, team_id=team_id, viewer=viewer)
    return await present_team(session, team, inside)


@router.put("/teams/{team_id}/submission", response_model=SubmissionPublic)
async def submit(team_id: str, body: SubmissionCreate, session: SessionDep, runtime: RuntimeDep,
                 actor: CurrentPrincipal, clock: ClockDep):
    """Submit or replace the team's entry (team members only)."""
    return await competitions.submit(session=session, stager=runtime.stager, team_id=team_id, data=body,
                                     actor=actor, now=clock.now())


@router.get("/activities/{activity_id}/submissions", response_model=Page[SubmissionPublic])
async def list_submissions(activity_id: str, session: SessionDep, actor: Organising):
    """Every submission of the competition (organisers and the office)."""
    return Page[SubmissionPublic](items=await competitions.list_submissions(
        session=session, activity_id=activity_id, actor=actor))


@router.get("/activities/{activity_id}/scores", response_model=Page[ScorePublic])
async def list_scores(activity_id: str, session: SessionDep, actor: Organising):
    """Every judge's rubric points (organisers and the office)."""
    return Page[ScorePublic](items=await competitions.list_scores(session=session, activity_id=activity_id,
                                                                  actor=actor))


@router.post("/activities/{activity_id}/tracks/{track_id}/judges", status_code=status.HTTP_201_CREATED,
             response_model=JudgePublic)
async def assign_judge(activity_id: str, track_id: str, body: JudgeAssign, session: SessionDep, actor: Organising):
    """Assign a judge to a track."""
    return await competitions.assign_judge(session=session, activity_id=activity_id, track_id=track_id, data=body,
                                           actor=actor)


@router.get("/activities/{activity_id}/judging")
async def judging_view(activity_id: str, session: SessionDep, actor: Judging):
    """What the calling judge judges: their tracks' submissions, conflicts flagged."""
    return {"items": await competitions.judging_view(session=session, activity_id=activity_id, actor=actor)}


@router.put("/teams/{team_id}/scores/me", response_model=ScorePublic)
async def score(team_id: str, body: ScoreCreate, session: SessionDep, actor: Judging, clock: ClockDep):
    """Score a team on its track's rubric (a conflict of interest is refused with 403).

    A judge has one score per team: sending it again (also several at once) answers 200 with the latest points.
    """
    return await competitions.score(session=session, team_id=team_id, points=body.points, actor=actor,
                                    now=clock.now())


@router.get("/activities/{activity_id}/scoreboard")
async def scoreboard(activity_id: str, session: SessionDep, viewer: OptionalPrincipal):
    """The scoreboard: live for organisers and the office, frozen for everyone else once frozen."""
    return await competitions.scoreboard(session=session, activity_id=activity_id, viewer=viewer)


@router.post("/activities/{activity_id}/scoreboard/freeze", response_model=CompetitionState)
async def freeze(activity_id: str, session: SessionDep, runtime: RuntimeDep, actor: Organising, clock: ClockDep):
    """Freeze the public scoreboard."""
    return await competitions.freeze(session=session, stager=runtime.stager, activity_id=activity_id, actor=actor,
                                     now=clock.now())


@router.post("/activities/{activity_id}/results", response_model=CompetitionState)
async def publish_results(activity_id: str, body: ResultsPublish, session: SessionDep, runtime: RuntimeDep,
                          actor: Organising, clock: ClockDep):
    """Publish final rankings and awards (an event and open data follow)."""
    return await competitions.publish_results(
        session=session, stager=runtime.stager, activity_id=activity_id,
        tiers=[AwardTier(name=t.name, count=t.count) for t in body.awards], actor=actor, now=clock.now())


@router.get("/open-data/competitions/{activity_id}/results.json", tags=["open data"])
async def open_results_json(activity_id: str, session: SessionDep):
    """Published results as open data (JSON)."""
    act, comp = await competitions.open_results(session=session, activity_id=activity_id)
    return {"competition_id": act.id, "title_zh": act.title_zh, "published_at": comp.results_published_at,
            "tie_break": competitions.domain.TIE_BREAK, "license": "CC BY 4.0",
            "results": [{k: r.get(k) for k in competitions.OPEN_DATA_FIELDS} for r in comp.results]}


@router.get("/open-data/competitions/{activity_id}/results.csv", tags=["open data"])
async def open_results_csv(activity_id: str, session: SessionDep):
    """Published results as open data (CSV, UTF-8 with BOM)."""
    act, comp = await competitions.open_results(session=session, activity_id=activity_id)
    return Response(competitions.results_csv(comp.results), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="results-{act.id}.csv"'})
