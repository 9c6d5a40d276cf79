"""Pure rules of matching: vocabularies, the opportunity and match state machines, expiry, outcomes. No I/O."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from common.auth import Principal
from common.errors import Conflict, InvalidTransition, Unprocessable


class OpportunityKind(StrEnum):
    """What is sought or offered (see the glossary: 人才供需, 校企合作, 项目研发, 技术服务, 培训, 实习)."""

    TALENT_DEMAND = "talent_demand"
    ORDER_CLASS = "order_class"
    APPRENTICESHIP = "apprenticeship"
    CO_BUILT_COURSE = "co_built_course"
    JOINT_LAB = "joint_lab"
    INDUSTRY_COLLEGE = "industry_college"
    JOINT_RD = "joint_rd"
    TECHNICAL_SERVICE = "technical_service"
    TRAINING = "training"
    INTERNSHIP = "internship"


TALENT_KINDS = frozenset({
    OpportunityKind.TALENT_DEMAND, OpportunityKind.ORDER_CLASS, OpportunityKind.APPRENTICESHIP,
    OpportunityKind.INTERNSHIP,
})


class Direction(StrEnum):
    """A demand (an opportunity looking for a partner) or an offer (what an institution can provide)."""

    DEMAND = "demand"
    OFFER = "offer"


class OpportunityStatus(StrEnum):
    """Lifecycle of an opportunity or offer."""

    DRAFT = "draft"
    OPEN = "open"
    MATCHED = "matched"
    CLOSED = "closed"
    EXPIRED = "expired"


class OpportunityAction(StrEnum):
    """What may happen to an opportunity."""

    OPEN = "open"
    EDIT = "edit"
    MATCH = "match"
    REOPEN = "reopen"
    CLOSE = "close"
    EXPIRE = "expire"


_O = OpportunityStatus
_OA = OpportunityAction
OPPORTUNITY_TRANSITIONS: dict[tuple[OpportunityStatus, OpportunityAction], OpportunityStatus] = {
    (_O.DRAFT, _OA.EDIT): _O.DRAFT,
    (_O.DRAFT, _OA.OPEN): _O.OPEN,
    (_O.DRAFT, _OA.CLOSE): _O.CLOSED,
    (_O.OPEN, _OA.EDIT): _O.OPEN,
    (_O.OPEN, _OA.MATCH): _O.MATCHED,
    (_O.OPEN, _OA.CLOSE): _O.CLOSED,
    (_O.OPEN, _OA.EXPIRE): _O.EXPIRED,
    (_O.MATCHED, _OA.REOPEN): _O.OPEN,
    (_O.MATCHED, _OA.CLOSE): _O.CLOSED,
}


def opportunity_next(status: str, action: str) -> OpportunityStatus:
    """The status after `action`, or InvalidTransition naming the actions allowed from `status`."""
    nxt = OPPORTUNITY_TRANSITIONS.get((OpportunityStatus(status), OpportunityAction(action)))
    if nxt is None:
        allowed = sorted(a.value for (s, a) in OPPORTUNITY_TRANSITIONS if s == status)
        raise InvalidTransition(
            f"an opportunity in status {status!r} cannot {action}"
            + (f"; allowed: {', '.join(allowed)}" if allowed else " (final status)"),
            allowed=allowed, current_status=str(status),
        )
    return nxt


def check_opening(*, deadline: datetime | None, now: datetime, capacity: int) -> None:
    """An opportunity can open only with a future deadline (if any) and a positive capacity."""
    if deadline is not None and deadline <= now:
        raise Unprocessable(f"the deadline {deadline.isoformat()} has already passed", field="deadline")
    if capacity < 1:
        raise Unprocessable("capacity must be at least 1 to open", field="capacity")


def is_past_deadline(*, deadline: datetime | None, now: datetime) -> bool:
    """Whether an opportunity's deadline has passed."""
    return deadline is not None and deadline <= now


class MatchStatus(StrEnum):
    """Lifecycle of a match (an expression of interest that may become a tracked collaboration)."""

    PROPOSED = "proposed"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"
    AGREED = "agreed"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class MatchAction(StrEnum):
    """What may happen to a match, and who may do it."""

    ACCEPT = "accept"
    DECLINE = "decline"
    WITHDRAW = "withdraw"
    EXPIRE = "expire"
    AGREE = "agree"
    START = "start"
    COMPLETE = "complete"
    CANCEL = "cancel"


class Side(StrEnum):
    """Which party of a match acts: the proposer, the recipient, either, or the system (expiry)."""

    PROPOSER = "proposer"
    RECIPIENT = "recipient"
    EITHER = "either"
    SYSTEM = "system"


_M = MatchStatus
_MA = MatchAction
# (status, action) -> (next status, who may do it)
MATCH_TRANSITIONS: dict[tuple[MatchStatus, MatchAction], tuple[MatchStatus, Side]] = {
    (_M.PROPOSED, _MA.ACCEPT): (_M.ACCEPTED, Side.RECIPIENT),
    (_M.PROPOSED, _MA.DECLINE): (_M.DECLINED, Side.RECIPIENT),
    (_M.PROPOSED, _MA.WITHDRAW): (_M.WITHDRAWN, Side.PROPOSER),
    (_M.PROPOSED, _MA.EXPIRE): (_M.EXPIRED, Side.SYSTEM),
    (_M.ACCEPTED, _MA.AGREE): (_M.AGREED, Side.EITHER),
    (_M.ACCEPTED, _MA.CANCEL): (_M.CANCELLED, Side.EITHER),
    (_M.AGREED, _MA.START): (_M.IN_PROGRESS, Side.EITHER),
    (_M.AGREED, _MA.CANCEL): (_M.CANCELLED, Side.EITHER),
    (_M.IN_PROGRESS, _MA.COMPLETE): (_M.COMPLETED, Side.EITHER),
    (_M.IN_PROGRESS, _MA.CANCEL): (_M.CANCELLED, Side.EITHER),
}

PENDING_MATCH = frozenset({MatchStatus.PROPOSED})
LIVE_MATCH = frozenset({MatchStatus.ACCEPTED, MatchStatus.AGREED, MatchStatus.IN_PROGRESS})
SEAT_HOLDING_MATCH = LIVE_MATCH | {MatchStatus.COMPLETED}


def match_next(status: str, action: str, *, side: Side) -> MatchStatus:
    """The status after `action` by `side`; InvalidTransition (409) names what is allowed, wrong side is 409 too."""
    entry = MATCH_TRANSITIONS.get((MatchStatus(status), MatchAction(action)))
    allowed = sorted(a.value for (s, a) in MATCH_TRANSITIONS if s == status)
    if entry is None:
        raise InvalidTransition(
            f"a match in status {status!r} cannot {action}"
            + (f"; allowed: {', '.join(allowed)}" if allowed else " (final status)"),
            allowed=allowed, current_status=str(status),
        )
    nxt, who = entry
    if side not in (who, Side.SYSTEM) and who is not Side.EITHER:
        raise InvalidTransition(
            f"only the {who.value} of a match may {action} it", allowed=allowed, current_status=str(status),
        )
    return nxt


def match_repeated(status: str, action: str, *, side: Side) -> bool:
    """Whether `action` by `side` is a repeat: the match is already in the status that action leads to (accepting
    an accepted match), so it answers the final state instead of 409 and publishes nothing."""
    results = {(nxt, who) for (_, a), (nxt, who) in MATCH_TRANSITIONS.items() if a == action}
    return any(nxt == status and (who is Side.EITHER or side in (who, Side.SYSTEM)) for nxt, who in results)


def expiry_time(*, proposed_at: datetime, ttl: timedelta, opportunity_deadline: datetime | None) -> datetime:
    """A proposal expires after its time-to-live, and never later than the opportunity's deadline."""
    expires = proposed_at + ttl
    if opportunity_deadline is not None and opportunity_deadline < expires:
        return opportunity_deadline
    return expires


def check_pending_cap(*, pending: int, cap: int) -> None:
    """An institution may hold at most `cap` proposals awaiting an answer (Riipen-style request cap)."""
    if pending >= cap:
        raise Unprocessable(
            f"the institution already has {pending} pending proposals (the cap is {cap}); "
            "withdraw one or wait for answers", pending=pending, cap=cap,
        )


OUTCOME_FIELDS = ("students_trained", "hires", "projects_delivered")


def outcome_success_rate(*, completed: int, cancelled: int) -> float:
    """Past-outcome score: Laplace-smoothed share of collaborations completed (0.5 with no history)."""
    return (completed + 1) / (completed + cancelled + 2)


# Geographic neighbours among Shanghai's districts; Lingang (its own value) borders Pudong, Fengxian and Minhang.
DISTRICT_NEIGHBOURS: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in {
    "huangpu": {"xuhui", "jingan", "hongkou", "pudong"},
    "xuhui": {"huangpu", "changning", "jingan", "minhang", "pudong"},
    "changning": {"xuhui", "jingan", "putuo", "minhang"},
    "jingan": {"huangpu", "xuhui", "changning", "putuo", "hongkou", "baoshan"},
    "putuo": {"jingan", "changning", "jiading", "baoshan", "minhang"},
    "hongkou": {"huangpu", "jingan", "yangpu", "baoshan"},
    "yangpu": {"hongkou", "baoshan", "pudong"},
    "minhang": {"xuhui", "changning", "putuo", "jiading", "qingpu", "songjiang", "fengxian", "pudong", "lingang"},
    "baoshan": {"jiading", "putuo", "jingan", "hongkou", "yangpu", "pudong", "chongming"},
    "jiading": {"baoshan", "putuo", "minhang", "qingpu"},
    "pudong": {"huangpu", "xuhui", "yangpu", "baoshan", "minhang", "fengxian", "chongming", "lingang"},
    "jinshan": {"songjiang", "fengxian"},
    "songjiang": {"minhang", "qingpu", "jinshan", "fengxian"},
    "qingpu": {"jiading", "minhang", "songjiang"},
    "fengxian": {"minhang", "pudong", "songjiang", "jinshan", "lingang"},
    "chongming": {"baoshan", "pudong"},
    "lingang": {"pudong", "fengxian", "minhang"},
}.items()}
DISTRICTS = tuple(DISTRICT_NEIGHBOURS)


def district_affinity(a: str | None, b: str | None) -> float:
    """1 for the same district, 0.5 for neighbouring districts (Lingang included), else 0."""
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    return 0.5 if b in DISTRICT_NEIGHBOURS.get(a, ()) else 0.0


def resolve_successor(start: str, successors: dict[str, str | None]) -> str:
    """Follow merge successors from `start` to the institution that carries on (cycles stop where they close)."""
    seen = {start}
    current = start
    while (nxt := successors.get(current)) and nxt not in seen:
        seen.add(nxt)
        current = nxt
    return current


USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc_is_valid(code: str) -> bool:
    """Whether an 18-character unified social credit code has the right alphabet and GB 32100-2015 check character."""
    if len(code) != 18 or any(ch not in USCC_CHARSET for ch in code) or not code[2:8].isdigit():
        return False
    total = sum(USCC_CHARSET.index(ch) * w for ch, w in zip(code[:17], USCC_WEIGHTS))
    return code[17] == USCC_CHARSET[(31 - total % 31) % 31]


# ---------------------------------------------------------------- who sees a match, seats, the progress log

def match_visible(viewer: Principal, *, from_institution_id: str, to_institution_id: str) -> bool:
    """The one rule for reading a match (list, detail, and before any action): the office and the people of its two
    institutions. Everyone else is told nothing, not even that it exists (404)."""
    return viewer.is_office or (viewer.institution_id is not None
                                and viewer.institution_id in (from_institution_id, to_institution_id))


def check_seats(*, requested: int, capacity: int, taken: int) -> None:
    """Seats asked for must fit in what the opportunity has left (taken: seats of accepted and later matches)."""
    left = max(0, capacity - taken)
    if requested > left:
        raise Conflict(f"{requested} seats asked for but the opportunity has {left} of {capacity} left",
                       seats_left=left, capacity=capacity)


OFFICE_LABEL = "上海市产教融合办公室 (office)"


def progress_entry(*, actor: Principal, action: str, status: str, note: str, at: datetime) -> dict[str, object]:
    """One entry of a match's progress log (长效跟踪): what happened, the note, who (their institution, or the office)
    and when."""
    return {"at": at.isoformat(), "action": action, "status": status, "note": note,
            "by": OFFICE_LABEL if actor.is_office else (actor.name or actor.sub),
            "by_institution_id": None if actor.is_office else actor.institution_id}
