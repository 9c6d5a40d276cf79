"""Pure rules of the events service: lifecycle, seats and waitlists, teams, conflicts of interest, scoring. No I/O."""

from __future__ import annotations

import secrets
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from common.errors import Conflict, Forbidden, InvalidTransition, Unprocessable


class ActivityKind(StrEnum):
    """Kinds of activity the office runs (会、展、赛)."""

    CONFERENCE = "conference"
    FORUM = "forum"
    EXHIBITION = "exhibition"
    MATCHMAKING = "matchmaking"
    JOB_FAIR = "job_fair"
    TRAINING_CAMP = "training_camp"
    COMPETITION = "competition"


class Audience(StrEnum):
    """Who an activity is for."""

    STUDENTS = "students"
    TEACHERS = "teachers"
    ENTERPRISES = "enterprises"
    PUBLIC = "public"


class ActivityStatus(StrEnum):
    """The lifecycle of an activity."""

    DRAFT = "draft"
    PUBLISHED = "published"
    REGISTRATION_OPEN = "registration_open"
    REGISTRATION_CLOSED = "registration_closed"
    ONGOING = "ongoing"
    FINISHED = "finished"
    ARCHIVED = "archived"
    CANCELLED = "cancelled"


S = ActivityStatus
_FORWARD = [S.DRAFT, S.PUBLISHED, S.REGISTRATION_OPEN, S.REGISTRATION_CLOSED, S.ONGOING, S.FINISHED, S.ARCHIVED]
CANCELLABLE = frozenset({S.DRAFT, S.PUBLISHED, S.REGISTRATION_OPEN, S.REGISTRATION_CLOSED, S.ONGOING})

TRANSITIONS: dict[ActivityStatus, frozenset[ActivityStatus]] = {
    status: frozenset(({_FORWARD[i + 1]} if i + 1 < len(_FORWARD) else set())
                      | ({S.CANCELLED} if status in CANCELLABLE else set()))
    for i, status in enumerate(_FORWARD)
}
TRANSITIONS[S.CANCELLED] = frozenset()

# the activity.v1 event name for entering each status
ACTIVITY_EVENT_FOR = {
    S.PUBLISHED: "published", S.REGISTRATION_OPEN: "registration_opened", S.REGISTRATION_CLOSED: "registration_closed",
    S.ONGOING: "started", S.FINISHED: "finished", S.ARCHIVED: "archived", S.CANCELLED: "cancelled",
}
PUBLIC_STATUSES = frozenset(set(ActivityStatus) - {S.DRAFT})


def allowed_transitions(current: ActivityStatus | str) -> list[str]:
    """The statuses an activity may move to from `current`, in lifecycle order."""
    allowed = TRANSITIONS[ActivityStatus(current)]
    return [s.value for s in [*_FORWARD, S.CANCELLED] if s in allowed]


def check_transition(current: ActivityStatus | str, target: ActivityStatus | str) -> ActivityStatus:
    """Return the target status, or raise InvalidTransition naming the allowed ones."""
    current, target = ActivityStatus(current), ActivityStatus(target)
    if target not in TRANSITIONS[current]:
        allowed = allowed_transitions(current)
        raise InvalidTransition(
            f"an activity cannot go from {current.value} to {target.value}; allowed: "
            f"{', '.join(allowed) or 'none (terminal state)'}",
            current=current.value, requested=target.value, allowed=allowed,
        )
    return target


class RegistrationStatus(StrEnum):
    """Where a registration stands; `confirmed` and `offered` hold a seat."""

    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"
    OFFERED = "offered"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


R = RegistrationStatus
HOLDS_SEAT = frozenset({R.CONFIRMED, R.OFFERED})
ACTIVE = frozenset({R.CONFIRMED, R.OFFERED, R.WAITLISTED})


class ParticipantKind(StrEnum):
    """Who registers: a person, an institution, or a competition team."""

    INDIVIDUAL = "individual"
    INSTITUTION = "institution"
    TEAM = "team"


def participant_key(kind: ParticipantKind | str, ref: str) -> str:
    """The identity that makes registration idempotent inside a capacity pool."""
    return f"{ParticipantKind(kind).value}:{ref}"


def seat_available(*, capacity: int | None, held: int) -> bool:
    """Whether a pool with `held` seats taken (confirmed + open offers) has room for one more."""
    return capacity is None or held < capacity


def offers_to_make(*, capacity: int | None, held: int, waiting: int) -> int:
    """How many waitlisted registrants should receive an offer now."""
    if waiting <= 0:
        return 0
    if capacity is None:
        return waiting
    return max(0, min(waiting, capacity - held))


def offer_deadline(now: datetime, ttl_seconds: int) -> datetime:
    """When an offer made at `now` lapses."""
    return now + timedelta(seconds=ttl_seconds)


def offer_lapsed(expires_at: datetime | None, now: datetime) -> bool:
    """Whether an offer's deadline has passed."""
    return expires_at is not None and expires_at <= now


def registration_open_for(status: ActivityStatus | str) -> None:
    """Raise unless the activity takes registrations."""
    if ActivityStatus(status) != S.REGISTRATION_OPEN:
        raise InvalidTransition(
            f"registration is not open (the activity is {ActivityStatus(status).value})",
            current=ActivityStatus(status).value, allowed=[],
        )


def check_participant_kind(activity_kind: ActivityKind | str, participant_kind: ParticipantKind | str) -> None:
    """A competition takes teams only (its capacity counts teams); other activities take people and institutions."""
    if ActivityKind(activity_kind) == ActivityKind.COMPETITION and ParticipantKind(participant_kind) != \
            ParticipantKind.TEAM:
        raise Unprocessable(
            f"a competition takes teams only, not a registration as {ParticipantKind(participant_kind).value}: form a "
            "team (POST /activities/{id}/teams) or join one with its code", participant_kind="team")


def withdrawable(status: RegistrationStatus | str) -> bool:
    """A registration can be withdrawn while it is active."""
    return RegistrationStatus(status) in ACTIVE


def new_token(nbytes: int = 18) -> str:
    """An opaque, unguessable token (check-in QR payloads, team join codes)."""
    return secrets.token_urlsafe(nbytes)


JOIN_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed from a screen


def new_join_code(length: int = 8) -> str:
    """A short team join code that is easy to read out."""
    return "".join(secrets.choice(JOIN_CODE_ALPHABET) for _ in range(length))


# ---------------------------------------------------------------------------------------------- competitions


def check_represents(*, member_institution: str | None, represented: str | None, what: str = "this team") -> None:
    """Raise when a member bound to one institution would stand for another: a team formed or joined, a registration
    shown under an institution's name. A member whose account names no institution is not bound to one."""
    if member_institution and represented and member_institution != represented:
        raise Forbidden(f"{what} would represent institution {represented}, and you are a member of "
                        f"{member_institution}", represented=represented)


def check_team_size(*, members: int, team_max: int) -> None:
    """Raise when a team would exceed its track's size cap (409: the request is sound, the team's state refuses it;
    of N members joining at once where k places are left, k join and the others get this)."""
    if members > team_max:
        raise Conflict(f"the team is full: the track allows at most {team_max} members", team_max=team_max)


def check_team_complete(*, members: int, team_min: int) -> None:
    """Raise when a team is too small to submit."""
    if members < team_min:
        raise Unprocessable(f"the team has {members} member(s); the track needs at least {team_min} to submit",
                            team_min=team_min, members=members)


@dataclass(frozen=True)
class Criterion:
    """One rubric line: a name, its weight and the maximum points a judge may give."""

    key: str
    weight: float
    max_points: float


def validate_rubric(rubric: Iterable[Criterion]) -> list[Criterion]:
    """A rubric needs at least one criterion, unique keys and positive weights and maxima."""
    items = list(rubric)
    if not items:
        raise Unprocessable("a rubric needs at least one criterion")
    keys = [c.key for c in items]
    if len(set(keys)) != len(keys):
        raise Unprocessable("rubric criteria need unique keys")
    if any(c.weight <= 0 or c.max_points <= 0 for c in items):
        raise Unprocessable("rubric weights and maximum points must be positive")
    return items


def weighted_score(rubric: list[Criterion], points: Mapping[str, float]) -> float:
    """A judge's score out of 100: each criterion's share of its maximum, weighted, normalised by total weight."""
    missing = [c.key for c in rubric if c.key not in points]
    extra = sorted(set(points) - {c.key for c in rubric})
    if missing or extra:
        raise Unprocessable(
            "scores must cover exactly the rubric's criteria"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; unknown: {', '.join(extra)}" if extra else ""),
            missing=missing, unknown=extra,
        )
    for c in rubric:
        p = points[c.key]
        if not 0 <= p <= c.max_points:
            raise Unprocessable(f"criterion {c.key} takes 0..{c.max_points} points, got {p}", criterion=c.key)
    total_weight = sum(c.weight for c in rubric)
    return round(100 * sum(c.weight * points[c.key] / c.max_points for c in rubric) / total_weight, 4)


TIE_BREAK = ("mean weighted score (higher first); then mean share on the heaviest-weighted criterion (higher "
             "first); then the earlier submission; teams still equal share a rank (1, 2, 2, 4)")


@dataclass
class Entry:
    """A team's standing input: its judges' weighted totals and the points on the heaviest criterion."""

    team_id: str
    judge_totals: list[float]
    heaviest_shares: list[float] = field(default_factory=list)
    submitted_at: datetime | None = None


@dataclass(frozen=True)
class Standing:
    """A team's place on the board."""

    rank: int
    team_id: str
    score: float
    judges: int


def _sort_key(e: Entry) -> tuple:
    mean = statistics.fmean(e.judge_totals) if e.judge_totals else 0.0
    heavy = statistics.fmean(e.heaviest_shares) if e.heaviest_shares else 0.0
    ts = e.submitted_at.timestamp() if e.submitted_at else float("inf")
    return (-round(mean, 4), -round(heavy, 4), ts)


def rank(entries: Iterable[Entry]) -> list[Standing]:
    """Order teams by the stated tie-break (TIE_BREAK); fully tied teams share a rank, the next rank skips."""
    ordered = sorted(entries, key=lambda e: (_sort_key(e), e.team_id))
    out: list[Standing] = []
    prev_key, prev_rank = None, 0
    for i, e in enumerate(ordered, start=1):
        key = _sort_key(e)
        r = prev_rank if key == prev_key else i
        out.append(Standing(rank=r, team_id=e.team_id, score=-key[0], judges=len(e.judge_totals)))
        prev_key, prev_rank = key, r
    return out


def heaviest(rubric: list[Criterion]) -> Criterion:
    """The criterion with the largest weight (the first one listed on equal weights)."""
    return max(rubric, key=lambda c: c.weight)


@dataclass(frozen=True)
class AwardTier:
    """An award given to the next `count` ranks, e.g. 一等奖 x1."""

    name: str
    count: int


def assign_awards(standings: list[Standing], tiers: list[AwardTier]) -> dict[str, str]:
    """Give tiers down the ranking by rank: a tier covers ranks up to its cumulative count, so ties at a boundary
    all receive the better award; teams without judged scores get nothing."""
    awards: dict[str, str] = {}
    limit = 0
    for tier in tiers:
        limit += tier.count
        for s in standings:
            if s.team_id not in awards and s.rank <= limit and s.judges > 0:
                awards[s.team_id] = tier.name
    return awards


# ---------------------------------------------------------------------------------------------- conflicts of interest


def lineage(institution_id: str, successor_of: Mapping[str, str | None]) -> set[str]:
    """An institution with every predecessor and successor it is linked to by mergers."""
    related = {institution_id}
    changed = True
    while changed:
        changed = False
        for inst, succ in successor_of.items():
            if succ is None:
                continue
            if inst in related and succ not in related:
                related.add(succ)
                changed = True
            elif succ in related and inst not in related:
                related.add(inst)
                changed = True
    return related


def judge_affiliations(*, assigned: str | None, token: str | None, registry: str | None = None) -> list[str]:
    """Every institution a judge is known to belong to: the one the organiser gave when assigning them, the one in
    their own verified token and their mentor-pool institution in the registry (any may be missing; all count)."""
    return [i for i in dict.fromkeys((assigned, token, registry)) if i]


def conflict_of_interest(
    *, judge_institutions: Iterable[str], team_institutions: Iterable[str],
    successor_of: Mapping[str, str | None], alliances: Iterable[tuple[str, set[str]]], judge_team: str | None = None,
) -> str | None:
    """Why a judge may not score a team (a contestant of the competition themselves, same institution, merger
    lineage, shared alliance, for any of the judge's institutions), or None."""
    if judge_team is not None:
        return f"the judge competes in this competition (member of team {judge_team})"
    for judge_institution in judge_institutions:
        why = _conflict(judge_institution, team_institutions, successor_of, alliances)
        if why is not None:
            return why
    return None


def _conflict(judge_institution: str, team_institutions: Iterable[str], successor_of: Mapping[str, str | None],
              alliances: Iterable[tuple[str, set[str]]]) -> str | None:
    mine = lineage(judge_institution, successor_of)
    for team_inst in set(team_institutions):
        if team_inst == judge_institution:
            return f"the judge belongs to the team's institution {team_inst}"
        if team_inst in mine:
            return f"the judge's institution and the team's institution {team_inst} are linked by a merger"
        theirs = lineage(team_inst, successor_of)
        for name, members in alliances:
            if members & mine and members & theirs:
                return f"the judge's institution and the team's institution {team_inst} are both in alliance {name}"
    return None
