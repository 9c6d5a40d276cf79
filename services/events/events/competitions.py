"""Use cases for competitions: tracks, teams and join codes, submissions, judges, conflicts of interest, rubric
scoring, rankings, scoreboard freeze, awards and published results."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal, Role
from common.errors import Conflict, Forbidden, InvalidTransition, NotFound, Unprocessable
from common.outbox import EventStager
from common.spreadsheet import csv_from_dicts
from events import contracts as c
from events import domain
from events.domain import ActivityKind, ActivityStatus, AwardTier, Criterion, ParticipantKind, RegistrationStatus
from events.models import (
    Activity,
    Alliance,
    Competition,
    JudgeAssignment,
    Mentor,
    Organiser,
    Registration,
    Score,
    Submission,
    Team,
    TeamMember,
    Track,
)
from events.schemas_competition import JudgeAssign, SubmissionCreate, TeamCreate, TrackCreate
from events.service import can_manage, get_activity, managed_activity, place

OPEN, FROZEN, PUBLISHED = "open", "frozen", "results_published"
SUBMITTING = (ActivityStatus.REGISTRATION_OPEN, ActivityStatus.REGISTRATION_CLOSED, ActivityStatus.ONGOING)


def competition_payload(comp: Competition, act: Activity, **extra) -> c.CompetitionPayload:
    """The public event payload of a competition."""
    return c.CompetitionPayload(
        id=comp.id, activity_id=act.id, title_zh=act.title_zh, status=comp.status, frozen_at=comp.frozen_at,
        results=[c.ResultLine(**{k: r[k] for k in c.ResultLine.model_fields}) for r in (comp.results or [])],
        tie_break=domain.TIE_BREAK if comp.results else None, version=comp.version, **extra,
    )


async def _competition(session: AsyncSession, act: Activity, *, lock: bool = False) -> Competition:
    if act.kind != ActivityKind.COMPETITION:
        raise NotFound(f"activity {act.id} is a {act.kind}, not a competition")
    stmt = select(Competition).where(Competition.id == act.id)
    if lock:
        stmt = stmt.with_for_update()
    comp = (await session.execute(stmt)).scalar_one_or_none()
    if comp is None:
        comp = Competition(id=act.id)
        session.add(comp)
        await session.flush()
    return comp


async def _flush_or_conflict(session: AsyncSession, detail: str) -> None:
    """Flush, turning a unique-constraint race (two requests at once) into a 409 instead of a 500."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(detail) from exc


def rubric_of(track: Track) -> list[Criterion]:
    """A track's rubric as domain criteria."""
    return [Criterion(key=r["key"], weight=r["weight"], max_points=r["max_points"]) for r in track.rubric]


# ---------------------------------------------------------------------------------------------- tracks and teams


async def add_track(*, session: AsyncSession, activity_id: str, data: TrackCreate, actor: Principal) -> Track:
    """Add a track (division) with its team size limits and weighted rubric."""
    async with session.begin():
        act = await managed_activity(session=session, activity_id=activity_id, actor=actor)
        await _competition(session, act)
        if act.status in (ActivityStatus.FINISHED, ActivityStatus.ARCHIVED, ActivityStatus.CANCELLED):
            raise Conflict(f"tracks can no longer be added (the competition is {act.status})")
        domain.validate_rubric(Criterion(**r.model_dump(include={"key", "weight", "max_points"}))
                               for r in data.rubric)
        track = Track(activity_id=act.id, name_zh=data.name_zh, team_min=data.team_min, team_max=data.team_max,
                      rubric=[r.model_dump() for r in data.rubric])
        session.add(track)
    return track


async def list_tracks(*, session: AsyncSession, activity_id: str, viewer: Principal | None) -> list[Track]:
    """A competition's tracks."""
    act = await get_activity(session=session, activity_id=activity_id, viewer=viewer)
    if act.kind != ActivityKind.COMPETITION:
        raise NotFound(f"activity {act.id} is not a competition")
    return list((await session.execute(select(Track).where(Track.activity_id == act.id).order_by(Track.name_zh)))
                .scalars().all())


async def _free_to_compete(session: AsyncSession, activity_id: str, member_id: str) -> None:
    """Refuse a person already in a team of this competition, or one of its judges."""
    mine = (await session.execute(select(TeamMember.team_id).where(
        TeamMember.activity_id == activity_id, TeamMember.member_id == member_id))).scalar_one_or_none()
    if mine is not None:
        raise Conflict(f"you are already in team {mine} of this competition", team_id=mine)
    if (await session.execute(select(JudgeAssignment.id).where(
            JudgeAssignment.activity_id == activity_id, JudgeAssignment.judge_id == member_id))).first() is not None:
        raise Conflict("you judge this competition and may not compete in it")


async def create_team(
    *, session: AsyncSession, stager: EventStager, activity_id: str, data: TeamCreate, actor: Principal,
    now: datetime,
) -> tuple[Team, Registration]:
    """Form a team with the caller as captain and register it (a seat, or the waitlist when teams are capped)."""
    if not actor.has(Role.MEMBER):
        raise Forbidden("teams are formed by members (students or employees) for themselves")
    async with session.begin():
        act = await get_activity(session=session, activity_id=activity_id, viewer=actor)
        comp = await _competition(session, act, lock=True)  # its version is bumped below: no lost update
        domain.registration_open_for(act.status)
        track = await session.get(Track, data.track_id)
        if track is None or track.activity_id != act.id:
            raise NotFound(f"competition {act.id} has no track {data.track_id}")
        domain.check_represents(member_institution=actor.institution_id, represented=data.institution_id)
        if await session.get(Organiser, data.institution_id) is None:
            raise Unprocessable(f"institution {data.institution_id} is not registered (yet)")
        await _free_to_compete(session, act.id, actor.sub)
        taken = (await session.execute(select(Team.id).where(Team.activity_id == act.id, Team.name == data.name)))\
            .first()
        if taken:
            raise Conflict(f"a team called {data.name} already exists in this competition")
        team = Team(activity_id=act.id, track_id=track.id, name=data.name, captain_id=actor.sub,
                    institution_id=data.institution_id, join_code=domain.new_join_code())
        session.add(team)
        session.add(TeamMember(activity_id=act.id, team_id=team.id, member_id=actor.sub,
                               display_name=data.display_name or actor.name))
        await _flush_or_conflict(session, "you (or that team name) just joined another team of this competition")
        reg, _, _ = await place(
            session=session, stager=stager, act=act, pool_id=act.id,
            key=domain.participant_key(ParticipantKind.TEAM, team.id), participant_id=actor.sub,
            kind=ParticipantKind.TEAM, now=now, institution_id=team.institution_id, team_id=team.id,
            display_name=team.name, public_consent=data.public_consent,
        )
        team.registration_id = reg.id
        comp.version += 1
        await stager.stage(session, c.TeamRegistered, key=comp.id, payload=competition_payload(
            comp, act, team_id=team.id, team_name=team.name, track_id=track.id, institution_id=team.institution_id))
    return team, reg


async def join_team(
    *, session: AsyncSession, join_code: str, actor: Principal, display_name: str | None,
) -> Team:
    """Join a team with its code, within the track's size cap (the team row is locked while counting)."""
    if not actor.has(Role.MEMBER):
        raise Forbidden("members join teams for themselves")
    async with session.begin():
        team = (await session.execute(select(Team).where(Team.join_code == join_code.strip().upper())
                                      .with_for_update())).scalar_one_or_none()
        if team is None:
            raise NotFound("no team has this join code")
        act = await session.get(Activity, team.activity_id)
        domain.registration_open_for(act.status)
        domain.check_represents(member_institution=actor.institution_id, represented=team.institution_id)
        track = await session.get(Track, team.track_id)
        if (await session.execute(select(TeamMember.id).where(
                TeamMember.team_id == team.id, TeamMember.member_id == actor.sub))).first() is not None:
            return team  # a repeat: already in this team (the team's lock makes a simultaneous twin wait for it)
        await _free_to_compete(session, act.id, actor.sub)
        members = (await session.execute(select(func.count()).select_from(TeamMember).where(
            TeamMember.team_id == team.id))).scalar_one()
        domain.check_team_size(members=members + 1, team_max=track.team_max)
        session.add(TeamMember(activity_id=act.id, team_id=team.id, member_id=actor.sub,
                               display_name=display_name or actor.name))
        await _flush_or_conflict(session, "you just joined another team of this competition")
    return team


async def team_members(*, session: AsyncSession, team_id: str) -> list[TeamMember]:
    """A team's members, captain first."""
    return list((await session.execute(select(TeamMember).where(TeamMember.team_id == team_id)
                                       .order_by(TeamMember.joined_at))).scalars().all())


async def get_team(*, session: AsyncSession, team_id: str, viewer: Principal | None) -> tuple[Team, bool]:
    """A team, and whether the viewer may see its join code and members (members and organisers)."""
    team = await session.get(Team, team_id)
    if team is None:
        raise NotFound(f"no team with id {team_id}")
    act = await get_activity(session=session, activity_id=team.activity_id, viewer=viewer)
    inside = viewer is not None and (can_manage(act, viewer) or any(
        m.member_id == viewer.sub for m in await team_members(session=session, team_id=team.id)))
    return team, inside


async def list_teams(*, session: AsyncSession, activity_id: str, viewer: Principal | None) -> list[Team]:
    """A competition's teams."""
    act = await get_activity(session=session, activity_id=activity_id, viewer=viewer)
    await _competition(session, act)
    return list((await session.execute(select(Team).where(Team.activity_id == act.id).order_by(Team.name)))
                .scalars().all())


async def submit(
    *, session: AsyncSession, stager: EventStager, team_id: str, data: SubmissionCreate, actor: Principal,
    now: datetime,
) -> Submission:
    """A team member submits (or replaces) the team's entry while the competition runs."""
    async with session.begin():
        team = await session.get(Team, team_id)
        members = await team_members(session=session, team_id=team_id) if team else []
        if team is None or actor.sub not in {m.member_id for m in members}:
            raise NotFound(f"no team with id {team_id} of yours")
        act = await session.get(Activity, team.activity_id)
        # locked: a simultaneous second submission of the team waits and replaces this one (not a duplicate), and
        # publishing the results cannot slip in between the check below and the write
        comp = await _competition(session, act, lock=True)
        if act.status not in SUBMITTING or comp.status == PUBLISHED:
            raise Conflict(f"submissions are closed (the competition is {act.status}, results {comp.status})")
        reg = await session.get(Registration, team.registration_id)
        if reg is None or reg.status != RegistrationStatus.CONFIRMED:
            raise Conflict(f"the team's registration is {reg.status if reg else 'missing'}, not confirmed")
        track = await session.get(Track, team.track_id)
        domain.check_team_complete(members=len(members), team_min=track.team_min)
        sub = (await session.execute(select(Submission).where(Submission.team_id == team.id))).scalar_one_or_none()
        if sub is None:
            sub = Submission(team_id=team.id, activity_id=act.id, track_id=team.track_id, submitted_by=actor.sub,
                             submitted_at=now, **data.model_dump(mode="json"))
            session.add(sub)
        else:
            for k, v in data.model_dump(mode="json").items():
                setattr(sub, k, v)
            sub.submitted_by, sub.submitted_at, sub.version = actor.sub, now, sub.version + 1
        await session.flush()
        comp.version += 1
        await stager.stage(session, c.SubmissionReceived, key=comp.id, payload=competition_payload(
            comp, act, team_id=team.id, team_name=team.name, track_id=team.track_id,
            institution_id=team.institution_id, submission_id=sub.id))
    return sub


async def list_submissions(*, session: AsyncSession, activity_id: str, actor: Principal) -> list[Submission]:
    """Every submission of a competition (organisers and the office)."""
    act = await managed_activity(session=session, activity_id=activity_id, actor=actor)
    await _competition(session, act)
    return list((await session.execute(select(Submission).where(Submission.activity_id == act.id)
                                       .order_by(Submission.submitted_at))).scalars().all())


async def list_scores(*, session: AsyncSession, activity_id: str, actor: Principal) -> list[Score]:
    """Every judge's scores in a competition (organisers and the office), to review before publishing."""
    act = await managed_activity(session=session, activity_id=activity_id, actor=actor)
    await _competition(session, act)
    return list((await session.execute(select(Score).where(Score.activity_id == act.id)
                                       .order_by(Score.team_id, Score.judge_id))).scalars().all())


# ---------------------------------------------------------------------------------------------- judging


async def assign_judge(
    *, session: AsyncSession, activity_id: str, track_id: str, data: JudgeAssign, actor: Principal,
) -> JudgeAssignment:
    """Assign a judge (by user sub, with their institution and mentor-pool entry for conflict checks) to a track."""
    async with session.begin():
        act = await managed_activity(session=session, activity_id=activity_id, actor=actor)
        await _competition(session, act)
        # locked: the same judge assigned twice at once is one assignment, updated by the second
        track = await session.get(Track, track_id, with_for_update=True)
        if track is None or track.activity_id != act.id:
            raise NotFound(f"competition {act.id} has no track {track_id}")
        if data.institution_id and await session.get(Organiser, data.institution_id) is None:
            raise Unprocessable(f"institution {data.institution_id} is not registered (yet)")
        mentor = await session.get(Mentor, data.mentor_id) if data.mentor_id else None
        if data.mentor_id and (mentor is None or mentor.status != "listed"):
            raise Unprocessable(f"mentor {data.mentor_id} is not listed in the registry's mentor pool (unknown, "
                                "not consented yet, or unlisted)")
        competing = await _team_of(session, act.id, data.judge_id)
        if competing is not None:
            raise Conflict(f"{data.judge_id} competes in this competition (member of team {competing}) and may not "
                           "judge it")
        existing = (await session.execute(select(JudgeAssignment).where(
            JudgeAssignment.track_id == track.id, JudgeAssignment.judge_id == data.judge_id))).scalar_one_or_none()
        if existing is not None:
            existing.institution_id, existing.mentor_id = data.institution_id, data.mentor_id
            return existing
        ja = JudgeAssignment(activity_id=act.id, track_id=track.id, **data.model_dump())
        session.add(ja)
    return ja


async def _relations(session: AsyncSession) -> tuple[dict[str, str | None], list[tuple[str, set[str]]]]:
    succ = dict((await session.execute(select(Organiser.id, Organiser.successor_id).where(
        Organiser.successor_id.is_not(None)))).all())
    alliances = [(a.name_zh, set(a.member_ids)) for a in (await session.execute(
        select(Alliance).where(Alliance.status != "dissolved"))).scalars().all()]
    return succ, alliances


async def _affiliations(session: AsyncSession, judge: JudgeAssignment, actor: Principal) -> list[str]:
    """The judge's institutions: as assigned, in their own token, and their mentor-pool entry's as it is now."""
    mentor = await session.get(Mentor, judge.mentor_id) if judge.mentor_id else None
    return domain.judge_affiliations(assigned=judge.institution_id, token=actor.institution_id,
                                     registry=mentor.institution_id if mentor else None)


async def _team_of(session: AsyncSession, activity_id: str, sub: str) -> str | None:
    """The name of the team this person competes in, in this competition (None if they compete in none)."""
    return (await session.execute(select(Team.name).join(TeamMember, TeamMember.team_id == Team.id).where(
        TeamMember.activity_id == activity_id, TeamMember.member_id == sub))).scalar_one_or_none()


async def conflict_for(session: AsyncSession, judge: JudgeAssignment, team: Team, actor: Principal) -> str | None:
    """Why this judge may not score this team (a contestant themselves, or by every institution the judge is known to
    belong to), or None."""
    succ, alliances = await _relations(session)
    return domain.conflict_of_interest(
        judge_institutions=await _affiliations(session, judge, actor),
        team_institutions=[team.institution_id], successor_of=succ, alliances=alliances,
        judge_team=await _team_of(session, team.activity_id, judge.judge_id))


async def judging_view(*, session: AsyncSession, activity_id: str, actor: Principal) -> list[dict]:
    """What a judge judges: their tracks' teams with submissions, each flagged with any conflict of interest."""
    assignments = (await session.execute(select(JudgeAssignment).where(
        JudgeAssignment.activity_id == activity_id, JudgeAssignment.judge_id == actor.sub))).scalars().all()
    if not assignments:
        raise NotFound(f"you judge nothing in activity {activity_id}")
    succ, alliances = await _relations(session)
    out = []
    for ja in assignments:
        track = await session.get(Track, ja.track_id)
        rows = (await session.execute(select(Team, Submission).join(Submission, Submission.team_id == Team.id)
                                      .where(Team.track_id == ja.track_id).order_by(Team.name))).all()
        mine = {s.team_id: s for s in (await session.execute(select(Score).where(
            Score.track_id == ja.track_id, Score.judge_id == actor.sub))).scalars().all()}
        affiliations = await _affiliations(session, ja, actor)
        competing = await _team_of(session, activity_id, actor.sub)
        for team, sub in rows:
            why = domain.conflict_of_interest(judge_institutions=affiliations, team_institutions=[team.institution_id],
                                              successor_of=succ, alliances=alliances, judge_team=competing)
            out.append({
                "track_id": track.id, "track_name": track.name_zh, "rubric": track.rubric, "team_id": team.id,
                "team_name": team.name, "institution_id": team.institution_id,
                "submission": {"id": sub.id, "title": sub.title, "summary": sub.summary, "links": sub.links},
                "conflict": why, "my_points": mine[team.id].points if team.id in mine else None,
            })
    return out


async def score(
    *, session: AsyncSession, team_id: str, points: dict[str, float], actor: Principal, now: datetime,
) -> Score:
    """A judge of the team's track scores its submission on the rubric; conflicts of interest are refused."""
    if not actor.has(Role.JUDGE):
        raise Forbidden("only judges score")
    async with session.begin():
        # locked: a judge's score sent twice at once is one score, the later one's points (never a 409)
        team = await session.get(Team, team_id, with_for_update={"key_share": True})
        if team is None:
            raise NotFound(f"no team with id {team_id}")
        ja = (await session.execute(select(JudgeAssignment).where(
            JudgeAssignment.track_id == team.track_id, JudgeAssignment.judge_id == actor.sub))).scalar_one_or_none()
        if ja is None:
            raise Forbidden("you are not a judge of this team's track")
        why = await conflict_for(session, ja, team, actor)
        if why is not None:
            raise Forbidden(f"conflict of interest: {why}", reason="conflict-of-interest")
        act = await session.get(Activity, team.activity_id)
        comp = await _competition(session, act)
        if comp.status == PUBLISHED:
            raise Conflict("results are published; scores are final")
        if (await session.execute(select(Submission.id).where(Submission.team_id == team.id))).first() is None:
            raise Conflict("the team has not submitted anything to score")
        track = await session.get(Track, team.track_id)
        total = domain.weighted_score(rubric_of(track), points)
        row = (await session.execute(select(Score).where(Score.team_id == team.id, Score.judge_id == actor.sub)))\
            .scalar_one_or_none()
        if row is None:
            row = Score(activity_id=act.id, track_id=track.id, team_id=team.id, judge_id=actor.sub, points=points,
                        total=total, scored_at=now)
            session.add(row)
            await _flush_or_conflict(session, "a score from you for this team was just recorded; send it again")
        else:
            row.points, row.total, row.scored_at = dict(points), total, now
    return row


# ---------------------------------------------------------------------------------------------- boards and results


async def live_board(session: AsyncSession, activity_id: str) -> list[dict]:
    """Current standings per track by the stated tie-break (teams with a submission)."""
    tracks = {t.id: t for t in (await session.execute(select(Track).where(Track.activity_id == activity_id)))
              .scalars().all()}
    rows = (await session.execute(select(Team, Submission).join(Submission, Submission.team_id == Team.id)
                                  .where(Team.activity_id == activity_id))).all()
    scores = defaultdict(list)
    for s in (await session.execute(select(Score).where(Score.activity_id == activity_id))).scalars().all():
        scores[s.team_id].append(s)
    names = dict((await session.execute(select(Organiser.id, Organiser.name_zh))).all())
    by_track: dict[str, list] = defaultdict(list)
    teams = {}
    for team, sub in rows:
        teams[team.id] = team
        heavy = domain.heaviest(rubric_of(tracks[team.track_id]))
        by_track[team.track_id].append(domain.Entry(
            team_id=team.id, judge_totals=[s.total for s in scores[team.id]],
            heaviest_shares=[s.points.get(heavy.key, 0) / heavy.max_points for s in scores[team.id]],
            submitted_at=sub.submitted_at))
    board = []
    for track_id in sorted(by_track, key=lambda t: tracks[t].name_zh):
        for st in domain.rank(by_track[track_id]):
            team = teams[st.team_id]
            board.append({"track_id": track_id, "track_name": tracks[track_id].name_zh, "rank": st.rank,
                          "team_id": team.id, "team_name": team.name, "institution_id": team.institution_id,
                          "institution_name": names.get(team.institution_id), "score": round(st.score, 2),
                          "judges": st.judges})
    return board


async def scoreboard(*, session: AsyncSession, activity_id: str, viewer: Principal | None) -> dict:
    """The board: managers see it live; everyone else sees the frozen snapshot (or the published results)."""
    act = await get_activity(session=session, activity_id=activity_id, viewer=viewer)
    comp = await _competition(session, act)
    if comp.status == PUBLISHED:
        return {"status": comp.status, "live": False, "tie_break": domain.TIE_BREAK, "board": comp.results}
    if can_manage(act, viewer):
        return {"status": comp.status, "live": True, "frozen_at": comp.frozen_at, "tie_break": domain.TIE_BREAK,
                "board": await live_board(session, act.id)}
    if comp.status == FROZEN:
        return {"status": comp.status, "live": False, "frozen_at": comp.frozen_at, "tie_break": domain.TIE_BREAK,
                "board": comp.frozen_board}
    return {"status": comp.status, "live": True, "tie_break": domain.TIE_BREAK, "board": await live_board(session,
                                                                                                         act.id)}


async def freeze(*, session: AsyncSession, stager: EventStager, activity_id: str, actor: Principal,
                 now: datetime) -> Competition:
    """Freeze the public scoreboard: the public keeps seeing this snapshot while judging goes on."""
    async with session.begin():
        act = await managed_activity(session=session, activity_id=activity_id, actor=actor)
        comp = await _competition(session, act, lock=True)
        if comp.status != OPEN:
            raise InvalidTransition(f"the scoreboard is {comp.status}; only an open board can be frozen",
                                    current=comp.status, allowed=[FROZEN, PUBLISHED] if comp.status == OPEN else (
                                        [PUBLISHED] if comp.status == FROZEN else []))
        comp.frozen_board = await live_board(session, act.id)
        comp.status, comp.frozen_at, comp.version = FROZEN, now, comp.version + 1
        await stager.stage(session, c.ScoreboardFrozen, key=comp.id, payload=competition_payload(comp, act))
    return comp


async def publish_results(
    *, session: AsyncSession, stager: EventStager, activity_id: str, tiers: list[AwardTier], actor: Principal,
    now: datetime,
) -> Competition:
    """Publish final rankings with awards given down each track's ranking; an event and open data follow."""
    async with session.begin():
        act = await managed_activity(session=session, activity_id=activity_id, actor=actor)
        comp = await _competition(session, act, lock=True)
        if comp.status == PUBLISHED:
            raise InvalidTransition("results are already published", current=comp.status, allowed=[])
        board = await live_board(session, act.id)
        results = []
        for track_id in dict.fromkeys(line["track_id"] for line in board):
            lines = [line for line in board if line["track_id"] == track_id]
            standings = [domain.Standing(rank=x["rank"], team_id=x["team_id"], score=x["score"], judges=x["judges"])
                         for x in lines]
            awards = domain.assign_awards(standings, tiers)
            results += [{**x, "award": awards.get(x["team_id"])} for x in lines]
        comp.results, comp.status, comp.results_published_at = results, PUBLISHED, now
        comp.version += 1
        await stager.stage(session, c.ResultsPublished, key=comp.id, payload=competition_payload(comp, act))
    return comp


OPEN_DATA_FIELDS = ["track_name", "rank", "team_name", "institution_name", "score", "award", "team_id",
                    "institution_id", "track_id"]


async def open_results(*, session: AsyncSession, activity_id: str) -> tuple[Activity, Competition]:
    """Published results of a competition (404 until published)."""
    act = await get_activity(session=session, activity_id=activity_id, viewer=None)
    comp = await _competition(session, act)
    if comp.status != PUBLISHED:
        raise NotFound(f"competition {activity_id} has no published results yet")
    return act, comp


def results_csv(results: list[dict]) -> str:
    """Results as CSV (UTF-8 with BOM so spreadsheet software reads the Chinese names; team and institution names that
    would start a formula neutralised)."""
    return csv_from_dicts(OPEN_DATA_FIELDS, results)
