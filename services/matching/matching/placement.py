"""Stable placement rounds: applicant-proposing deferred acceptance with capacities, teams, quotas and a lottery.

Pure and deterministic for a seed. Participants (or teams, placed together or not at all) rank positions; positions
rank participants or declare no preference. Ties and "no preference" are broken by one lottery over units, drawn from
`random.Random(seed)` over the sorted unit ids, so anyone can re-draw it from the published seed. A unit's standing at a
position is (rank at that position, lottery number), lower is better; a position that ranks nobody ranks all by
lottery, a position that ranks some participants finds the others unacceptable (incomplete lists).

Each position chooses from the units proposing to it with its choice function: seats reserved for a category (soft
reserves) are filled first by the best units of that category, the remaining seats by the best of the rest; a team
takes as many seats as it has members. A host's capacity across its positions is enforced by displacing the unit with
the worst standing among the host's positions. With unit sizes and no host caps this is the textbook hospital/resident
algorithm, so the result is the applicant-optimal stable matching (identical to `matching.games.HospitalResident`).
"""

from __future__ import annotations

import random
from bisect import insort
from collections import defaultdict
from dataclasses import dataclass, field

from common.errors import Unprocessable


@dataclass(frozen=True)
class Position:
    """A position (internship, order-class seat, mentor slot) with seats, an optional ranking and reserved seats."""

    id: str
    capacity: int
    title: str = ""
    host_id: str | None = None
    ranking: tuple[str, ...] | None = None  # None: no preference, the lottery decides
    reserved: dict[str, int] = field(default_factory=dict)  # category -> seats reserved for it


@dataclass(frozen=True)
class Applicant:
    """A participant with a ranked (possibly short) list of positions and an optional category."""

    id: str
    preferences: tuple[str, ...] = ()
    category: str | None = None


@dataclass(frozen=True)
class Team:
    """A team applying as one unit; its members' own lists are ignored, they are placed together or not at all."""

    id: str
    members: tuple[str, ...]
    preferences: tuple[str, ...]


@dataclass(frozen=True)
class PlacementProblem:
    """Everything a round needs: positions, applicants, teams, host capacities and the published seed."""

    positions: tuple[Position, ...]
    applicants: tuple[Applicant, ...]
    teams: tuple[Team, ...] = ()
    host_capacities: dict[str, int] = field(default_factory=dict)
    seed: int = 0


@dataclass
class PlacementResult:
    """Who went where, why the others did not, and the lottery that was drawn."""

    seed: int
    assignments: dict[str, str]  # applicant id -> position id
    unplaced: dict[str, list[dict]]  # applicant id -> one reason per position on the list
    lottery: dict[str, int]  # unit id (applicant or team) -> lottery number (0 = luckiest)
    filled: dict[str, list[str]]  # position id -> applicant ids placed there
    choice_rank: dict[str, int]  # applicant id -> 1-based place of the assigned position on the unit's list

    def position_of(self, applicant_id: str) -> str | None:
        """The position an applicant was placed in, or None."""
        return self.assignments.get(applicant_id)


class PlacementInputError(Unprocessable):
    """The round's data is inconsistent (unknown ids, duplicate team members, bad capacities)."""


@dataclass
class _Compiled:
    unit_ids: list[str]
    members: list[tuple[str, ...]]
    size: list[int]
    category: list[str | None]
    prefs: list[list[tuple[int, int]]]  # per unit: acceptable (position index, key), in the unit's order
    wanted: list[tuple[str, ...]]  # per unit: its full list as given (for explanations)
    lottery: list[int]
    pos: list[Position]
    pos_index: dict[str, int]
    host_of: list[int]  # -1 when the host is uncapped
    host_caps: list[int]
    host_positions: list[list[int]]
    unit_index: dict[str, int]


def _compile(problem: PlacementProblem) -> _Compiled:
    """Validate the problem and turn ids into indices, standings into integer keys."""
    pos = list(problem.positions)
    pos_index: dict[str, int] = {}
    for i, p in enumerate(pos):
        if p.id in pos_index:
            raise PlacementInputError(f"position {p.id!r} appears twice")
        if p.capacity < 0 or any(v < 0 for v in p.reserved.values()) or sum(p.reserved.values()) > p.capacity:
            raise PlacementInputError(f"position {p.id!r}: capacity and reserved seats must be >= 0, "
                                      f"reserved seats at most the capacity")
        pos_index[p.id] = i
    applicants = {a.id: a for a in problem.applicants}
    if len(applicants) != len(problem.applicants):
        raise PlacementInputError("an applicant id appears twice")
    in_team: dict[str, str] = {}
    for t in problem.teams:
        if t.id in applicants:
            raise PlacementInputError(f"team id {t.id!r} is also an applicant id")
        if not t.members:
            raise PlacementInputError(f"team {t.id!r} has no members")
        for m in t.members:
            if m not in applicants:
                raise PlacementInputError(f"team {t.id!r}: member {m!r} is not an applicant of this round")
            if m in in_team:
                raise PlacementInputError(f"applicant {m!r} is in teams {in_team[m]!r} and {t.id!r}")
            in_team[m] = t.id
    unit_ids: list[str] = []
    members: list[tuple[str, ...]] = []
    wanted: list[tuple[str, ...]] = []
    for a in problem.applicants:
        if a.id not in in_team:
            unit_ids.append(a.id)
            members.append((a.id,))
            wanted.append(a.preferences)
    for t in problem.teams:
        unit_ids.append(t.id)
        members.append(tuple(t.members))
        wanted.append(t.preferences)
    n = len(unit_ids)
    for uid, lst in zip(unit_ids, wanted):
        if len(set(lst)) != len(lst):
            raise PlacementInputError(f"{uid!r} lists a position twice")
        for pid in lst:
            if pid not in pos_index:
                raise PlacementInputError(f"{uid!r} lists unknown position {pid!r}")
    order = sorted(unit_ids)
    random.Random(problem.seed).shuffle(order)
    lottery_of = {u: i for i, u in enumerate(order)}
    lottery = [lottery_of[u] for u in unit_ids]
    rank_maps: list[dict[str, int] | None] = [
        None if p.ranking is None else {a: r for r, a in reversed(list(enumerate(p.ranking)))} for p in pos
    ]
    prefs: list[list[tuple[int, int]]] = []
    for u in range(n):
        lst = []
        ids = (unit_ids[u], *members[u])
        for pid in wanted[u]:
            pi = pos_index[pid]
            ranks = rank_maps[pi]
            if ranks is None:
                rank = 0
            else:
                found = [ranks[x] for x in ids if x in ranks]
                if not found:
                    continue  # the position does not rank this unit: unacceptable
                rank = min(found)
            lst.append((pi, rank * n + lottery[u]))
        prefs.append(lst)
    category = []
    for ms in members:
        cats = {applicants[m].category for m in ms}
        category.append(cats.pop() if len(cats) == 1 else None)
    hosts = sorted({p.host_id for p in pos if p.host_id is not None and p.host_id in problem.host_capacities})
    host_idx = {h: i for i, h in enumerate(hosts)}
    host_of = [host_idx.get(p.host_id, -1) if p.host_id is not None else -1 for p in pos]
    host_positions: list[list[int]] = [[] for _ in hosts]
    for pi, h in enumerate(host_of):
        if h >= 0:
            host_positions[h].append(pi)
    return _Compiled(
        unit_ids=unit_ids, members=members, size=[len(m) for m in members], category=category, prefs=prefs,
        wanted=wanted, lottery=lottery, pos=pos, pos_index=pos_index, host_of=host_of,
        host_caps=[problem.host_capacities[h] for h in hosts], host_positions=host_positions,
        unit_index={u: i for i, u in enumerate(unit_ids)},
    )


def choose(position: Position, candidates: list[tuple[int, int]], size: list[int],
           category: list[str | None]) -> list[tuple[int, int]]:
    """A position's choice among (key, unit) candidates sorted best first: reserved seats first, then the rest."""
    chosen: set[int] = set()
    total = 0
    for cat in sorted(position.reserved):
        budget = position.reserved[cat]
        used = 0
        for _key, u in candidates:
            if u not in chosen and category[u] == cat and used + size[u] <= budget \
                    and total + size[u] <= position.capacity:
                chosen.add(u)
                used += size[u]
                total += size[u]
    for _key, u in candidates:
        if u not in chosen and total + size[u] <= position.capacity:
            chosen.add(u)
            total += size[u]
    return [c for c in candidates if c[1] in chosen]


def _deferred_acceptance(c: _Compiled) -> tuple[list[list[tuple[int, int]]], list[int]]:
    """Run applicant-proposing DA; returns the held (key, unit) lists per position and each unit's position or -1."""
    n_pos = len(c.pos)
    held: list[list[tuple[int, int]]] = [[] for _ in range(n_pos)]
    seats = [0] * n_pos
    caps = [p.capacity for p in c.pos]
    size = c.size
    # the textbook case (single applicants, no reserves, no host cap) is kept tight: it dominates large rounds
    fast = [not p.reserved and c.host_of[i] < 0 for i, p in enumerate(c.pos)] if max(size, default=1) == 1 \
        else [False] * n_pos
    host_of = c.host_of
    host_seats = [0] * len(c.host_caps)
    prefs = c.prefs
    nxt = [0] * len(c.unit_ids)
    where = [-1] * len(c.unit_ids)
    free = list(range(len(c.unit_ids) - 1, -1, -1))
    while free:
        u = free.pop()
        plist = prefs[u]
        while nxt[u] < len(plist):
            p, key = plist[nxt[u]]
            nxt[u] += 1
            h = held[p]
            if fast[p]:
                if seats[p] < caps[p]:
                    insort(h, (key, u))
                    seats[p] += 1
                    where[u] = p
                    break
                if not h or key > h[-1][0]:
                    continue
                insort(h, (key, u))
                _k, v = h.pop()
                where[v] = -1
                where[u] = p
                free.append(v)
                break
            before = [v for _k, v in h]
            held[p] = choose(c.pos[p], sorted(h + [(key, u)]), size, c.category)
            now_in = {v for _k, v in held[p]}
            seats[p] = sum(size[v] for _k, v in held[p])
            gone = [v for v in before if v not in now_in]
            placed = u in now_in
            hi = host_of[p]
            if hi >= 0:
                host_seats[hi] = sum(seats[q] for q in c.host_positions[hi])
                while host_seats[hi] > c.host_caps[hi]:
                    worst_q = max((q for q in c.host_positions[hi] if held[q]), key=lambda q: held[q][-1][0])
                    _k, v = held[worst_q].pop()
                    seats[worst_q] -= size[v]
                    host_seats[hi] -= size[v]
                    if v == u:
                        placed = False
                    else:
                        gone.append(v)
            for v in gone:
                where[v] = -1
            free.extend(gone)
            if placed:
                where[u] = p
                break
    return held, where


def solve(problem: PlacementProblem) -> PlacementResult:
    """Place everyone: applicant-proposing deferred acceptance, then explain every unplaced participant."""
    c = _compile(problem)
    held, where = _deferred_acceptance(c)
    assignments: dict[str, str] = {}
    choice_rank: dict[str, int] = {}
    filled: dict[str, list[str]] = {p.id: [] for p in c.pos}
    for p, lst in enumerate(held):
        for _key, u in lst:
            pid = c.pos[p].id
            rank = c.wanted[u].index(pid) + 1
            for m in c.members[u]:
                assignments[m] = pid
                choice_rank[m] = rank
                filled[pid].append(m)
    unplaced: dict[str, list[dict]] = {}
    for u in range(len(c.unit_ids)):
        if where[u] >= 0:
            continue
        reasons = explain_unplaced(c, held, u)
        for m in c.members[u]:
            unplaced[m] = reasons
    return PlacementResult(
        seed=problem.seed, assignments=assignments, unplaced=unplaced,
        lottery={c.unit_ids[u]: c.lottery[u] for u in range(len(c.unit_ids))}, filled=filled,
        choice_rank=choice_rank,
    )


def _standing(c: _Compiled, key: int) -> dict:
    """A key decoded for people: rank at the position (None under no preference) and lottery number."""
    n = len(c.unit_ids)
    return {"rank": key // n + 1, "lottery": key % n}


def explain_unplaced(c: _Compiled, held: list[list[tuple[int, int]]], u: int) -> list[dict]:
    """One reason per position on an unplaced unit's list: not ranked there, full of better-placed units, etc.

    Each reason has a stable `reason` code and its wording for people in both languages (`detail` in English,
    `detail_zh` in Chinese), so whoever shows it can choose the reader's language."""
    if not c.wanted[u]:
        return [_reason({"position_id": None}, "empty_list")]
    keys = dict(c.prefs[u])
    out = []
    for pid in c.wanted[u]:
        p = c.pos_index[pid]
        pos = c.pos[p]
        title = pos.title or pid
        if p not in keys:
            out.append(_reason({"position_id": pid}, "not_ranked_by_position", title=title))
            continue
        key = keys[p]
        mine = _standing(c, key)
        admitted = held[p]
        cutoff = _standing(c, admitted[-1][0]) if admitted else None
        base = {"position_id": pid, "your_standing": mine, "lowest_admitted": cutoff,
                "capacity": pos.capacity, "admitted": sum(c.size[v] for _k, v in admitted)}
        with_me = choose(pos, sorted(admitted + [(key, u)]), c.size, c.category)
        if all(v != u for _k, v in with_me):
            better = sum(1 for k, _v in admitted if k < key)
            if pos.capacity == 0:
                _reason(base, "no_seats", title=title)
            elif c.size[u] > 1 and 0 < (room := pos.capacity - sum(c.size[v] for k, v in admitted if k < key)) \
                    < c.size[u]:
                _reason(base, "team_does_not_fit", title=title, size=c.size[u], room=room)
            elif pos.reserved and better < len(admitted):
                _reason(base, "seats_reserved", title=title, reserved=", ".join(sorted(pos.reserved)))
            else:
                _reason(base, "full_of_higher_ranked", title=title, capacity=pos.capacity, better=better)
        else:
            _reason(base, "host_full", host=pos.host_id)
        out.append(base)
    return out


# What each reason code says to people, in English and Chinese (format fields from `_reason`'s keywords).
REASON_TEXT: dict[str, tuple[str, str]] = {
    "empty_list": ("no position was listed", "志愿表中没有填写岗位"),
    "not_ranked_by_position": ("{title} ranks its applicants and did not list you",
                               "“{title}”对申请人排序，未将您列入"),
    "no_seats": ("{title} offers no seats in this round", "“{title}”本轮没有名额"),
    "team_does_not_fit": ("your team needs {size} seats together; {title} had {room} left after admitting "
                          "higher-standing applicants",
                          "您的团队需要 {size} 个名额在同一岗位；“{title}”录取排名更靠前的申请人后仅剩 {room} 个"),
    "seats_reserved": ("{title}: the seats left are reserved for {reserved}", "“{title}”：剩余名额为 {reserved} 保留"),
    "full_of_higher_ranked": ("{title} filled its {capacity} seats with {better} higher-standing applicants",
                              "“{title}”的 {capacity} 个名额已由 {better} 位排名更靠前的申请人占满"),
    "host_full": ("the host {host} reached its capacity across its positions", "接收单位 {host} 的各岗位总名额已满"),
}


def _reason(base: dict, code: str, **fields) -> dict:
    en, zh = REASON_TEXT[code]
    base.update(reason=code, detail=en.format(**fields), detail_zh=zh.format(**fields))
    return base


def blocking_pairs(problem: PlacementProblem, result: PlacementResult) -> list[tuple[str, str]]:
    """Unit/position pairs that would both rather be together (ignoring host caps): empty for a stable result."""
    c = _compile(problem)
    pos_of_unit = {}
    held: list[list[tuple[int, int]]] = [[] for _ in c.pos]
    for u in range(len(c.unit_ids)):
        pid = result.assignments.get(c.members[u][0])
        pos_of_unit[u] = c.pos_index[pid] if pid is not None else -1
        if pid is not None:
            key = dict(c.prefs[u])[c.pos_index[pid]]
            held[c.pos_index[pid]].append((key, u))
    for lst in held:
        lst.sort()
    blocking = []
    for u in range(len(c.unit_ids)):
        for p, key in c.prefs[u]:
            if p == pos_of_unit[u]:
                break  # positions after the current one are worse for u
            chosen = choose(c.pos[p], sorted(held[p] + [(key, u)]), c.size, c.category)
            if any(v == u for _k, v in chosen):
                blocking.append((c.unit_ids[u], c.pos[p].id))
    return blocking


def position_preferences(problem: PlacementProblem) -> dict[str, list[str]]:
    """Each position's strict order over the units that list it and that it accepts (for reference solvers)."""
    c = _compile(problem)
    lists: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for u in range(len(c.unit_ids)):
        for p, key in c.prefs[u]:
            lists[p].append((key, c.unit_ids[u]))
    return {c.pos[p].id: [uid for _k, uid in sorted(lists.get(p, []))] for p in range(len(c.pos))}


def acceptable_preferences(problem: PlacementProblem) -> dict[str, list[str]]:
    """Each unit's list restricted to the positions that accept it (for reference solvers)."""
    c = _compile(problem)
    return {c.unit_ids[u]: [c.pos[p].id for p, _k in c.prefs[u]] for u in range(len(c.unit_ids))}


def validate(problem: PlacementProblem) -> None:
    """Refuse an inconsistent round before it is stored (PlacementInputError names the defect)."""
    _compile(problem)
