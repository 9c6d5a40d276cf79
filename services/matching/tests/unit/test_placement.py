"""Stable placement: deferred acceptance properties on many random instances, teams, quotas, lottery, explanations."""

from __future__ import annotations

import random

import pytest

from matching import reference
from matching.placement import (
    REASON_TEXT,
    Applicant,
    PlacementInputError,
    PlacementProblem,
    Position,
    Team,
    acceptable_preferences,
    blocking_pairs,
    position_preferences,
    solve,
)

pytestmark = pytest.mark.unit


def random_problem(rng: random.Random, *, n_app: int, n_pos: int, max_cap: int, list_len: int,
                   ranked_share: float = 0.5, categories: bool = False, reserves: bool = False,
                   complete_rankings: bool = False) -> PlacementProblem:
    """A random round: incomplete lists, some positions ranking (part of) their applicants, others by lottery."""
    pos_ids = [f"p{i}" for i in range(n_pos)]
    apps = []
    for i in range(n_app):
        k = rng.randint(0, min(list_len, n_pos))
        cat = rng.choice(["secondary_vocational", None]) if categories else None
        apps.append(Applicant(id=f"a{i}", preferences=tuple(rng.sample(pos_ids, k)), category=cat))
    positions = []
    for pid in pos_ids:
        cap = rng.randint(0 if not complete_rankings else 1, max_cap)
        ranking = None
        if rng.random() < ranked_share:
            listed = [a.id for a in apps if pid in a.preferences]
            keep = listed if complete_rankings else [a for a in listed if rng.random() < 0.85]
            rng.shuffle(keep)
            ranking = tuple(keep)
        reserved = {}
        if reserves and cap and rng.random() < 0.5:
            reserved = {"secondary_vocational": rng.randint(1, cap)}
        positions.append(Position(id=pid, capacity=cap, ranking=ranking, reserved=reserved))
    return PlacementProblem(positions=tuple(positions), applicants=tuple(apps), seed=rng.randrange(2**31))


def _capacities_respected(problem: PlacementProblem, result) -> None:
    caps = {p.id: p.capacity for p in problem.positions}
    for pid, people in result.filled.items():
        assert len(people) <= caps[pid], f"{pid} over capacity"
    for a, pid in result.assignments.items():
        assert pid in next(x for x in problem.applicants if x.id == a).preferences or problem.teams


@pytest.mark.parametrize("seed", range(150))
def test_random_rounds_are_stable_within_capacity_and_equal_the_reference_solver(seed):
    rng = random.Random(seed)
    problem = random_problem(rng, n_app=rng.randint(1, 40), n_pos=rng.randint(1, 12), max_cap=rng.randint(1, 4),
                             list_len=rng.randint(1, 6))
    result = solve(problem)
    _capacities_respected(problem, result)
    assert blocking_pairs(problem, result) == []
    assert set(result.assignments) | set(result.unplaced) == {a.id for a in problem.applicants}
    unit_prefs = {u: ps for u, ps in acceptable_preferences(problem).items() if ps}
    expected = reference.solve_hospital_resident(
        unit_prefs, position_preferences(problem), {p.id: p.capacity for p in problem.positions})
    assert result.assignments == expected


@pytest.mark.parametrize("seed", range(40))
def test_one_to_one_rounds_equal_the_reference_stable_marriage(seed):
    rng = random.Random(1000 + seed)
    n = rng.randint(2, 12)
    ids = [f"p{i}" for i in range(n)]
    apps = tuple(Applicant(id=f"a{i}", preferences=tuple(rng.sample(ids, n))) for i in range(n))
    positions = tuple(
        Position(id=pid, capacity=1, ranking=tuple(rng.sample([a.id for a in apps], n))) for pid in ids)
    problem = PlacementProblem(positions=positions, applicants=apps, seed=seed)
    result = solve(problem)
    ref = reference.load()
    game = ref.StableMarriage.create_from_dictionaries(
        {a.id: list(a.preferences) for a in apps}, {p.id: list(p.ranking) for p in positions})
    expected = {s.name: r.name for s, r in game.solve(optimal="suitor").items()}
    assert result.assignments == expected
    assert blocking_pairs(problem, result) == []


@pytest.mark.parametrize("seed", range(60))
def test_reserved_quotas_keep_stability_and_capacities(seed):
    rng = random.Random(5000 + seed)
    problem = random_problem(rng, n_app=rng.randint(5, 40), n_pos=rng.randint(1, 8), max_cap=5, list_len=4,
                             categories=True, reserves=True)
    result = solve(problem)
    _capacities_respected(problem, result)
    assert blocking_pairs(problem, result) == []


@pytest.mark.parametrize("seed", range(60))
def test_teams_are_placed_together_or_not_at_all(seed):
    rng = random.Random(9000 + seed)
    base = random_problem(rng, n_app=rng.randint(6, 30), n_pos=rng.randint(1, 6), max_cap=6, list_len=4)
    ids = [a.id for a in base.applicants]
    rng.shuffle(ids)
    teams = []
    while len(ids) >= 2 and rng.random() < 0.7:
        k = rng.randint(2, 3)
        members, ids = ids[:k], ids[k:]
        prefs = rng.sample([p.id for p in base.positions], rng.randint(1, len(base.positions)))
        teams.append(Team(id=f"t{len(teams)}", members=tuple(members), preferences=tuple(prefs)))
    problem = PlacementProblem(positions=base.positions, applicants=base.applicants, teams=tuple(teams),
                               seed=base.seed)
    result = solve(problem)
    _capacities_respected(problem, result)
    for t in teams:
        where = {result.assignments.get(m) for m in t.members}
        assert len(where) == 1, f"team {t.id} split across {where}"
        if None in where:
            assert all(result.unplaced[m] for m in t.members)


def test_host_capacity_caps_seats_across_a_hosts_positions():
    positions = (Position(id="x", capacity=3, host_id="h"), Position(id="y", capacity=3, host_id="h"),
                 Position(id="z", capacity=3, host_id="other"))
    apps = tuple(Applicant(id=f"a{i}", preferences=("x", "y", "z")) for i in range(8))
    result = solve(PlacementProblem(positions=positions, applicants=apps, host_capacities={"h": 4}, seed=7))
    assert len(result.filled["x"]) + len(result.filled["y"]) == 4
    assert len(result.filled["z"]) == 3
    [(_unlucky, reasons)] = result.unplaced.items()
    assert [r["reason"] for r in reasons] == ["full_of_higher_ranked", "host_full", "full_of_higher_ranked"] or \
        {r["reason"] for r in reasons} <= {"full_of_higher_ranked", "host_full"}


def test_the_lottery_is_reproducible_from_the_published_seed_and_changes_with_it():
    positions = (Position(id="x", capacity=2),)
    apps = tuple(Applicant(id=f"a{i}", preferences=("x",)) for i in range(10))
    first = solve(PlacementProblem(positions=positions, applicants=apps, seed=2026))
    again = solve(PlacementProblem(positions=positions, applicants=apps, seed=2026))
    assert first.assignments == again.assignments and first.lottery == again.lottery
    others = [solve(PlacementProblem(positions=positions, applicants=apps, seed=s)).assignments for s in range(5)]
    assert any(o != first.assignments for o in others)
    winners = sorted(first.assignments, key=lambda a: first.lottery[a])
    assert winners == sorted(first.lottery, key=first.lottery.get)[:2]


def test_rankings_beat_the_lottery_and_unranked_applicants_are_not_acceptable():
    positions = (Position(id="x", capacity=1, ranking=("a2", "a1")),)
    apps = (Applicant(id="a1", preferences=("x",)), Applicant(id="a2", preferences=("x",)),
            Applicant(id="a3", preferences=("x",)))
    result = solve(PlacementProblem(positions=positions, applicants=apps, seed=1))
    assert result.assignments == {"a2": "x"}
    assert result.unplaced["a1"][0]["reason"] == "full_of_higher_ranked"
    assert result.unplaced["a1"][0]["lowest_admitted"]["rank"] == 1
    assert result.unplaced["a1"][0]["your_standing"]["rank"] == 2
    assert result.unplaced["a3"][0]["reason"] == "not_ranked_by_position"


def test_reserved_seats_go_to_the_category_before_better_ranked_others():
    positions = (Position(id="x", capacity=2, ranking=("a1", "a2", "s1"), reserved={"secondary_vocational": 1}),)
    apps = (Applicant(id="a1", preferences=("x",)), Applicant(id="a2", preferences=("x",)),
            Applicant(id="s1", preferences=("x",), category="secondary_vocational"))
    result = solve(PlacementProblem(positions=positions, applicants=apps))
    assert set(result.filled["x"]) == {"a1", "s1"}
    assert result.unplaced["a2"][0]["reason"] == "seats_reserved"


def test_unused_reserved_seats_open_to_everyone():
    positions = (Position(id="x", capacity=2, reserved={"secondary_vocational": 1}),)
    apps = (Applicant(id="a1", preferences=("x",)), Applicant(id="a2", preferences=("x",)))
    assert set(solve(PlacementProblem(positions=positions, applicants=apps)).filled["x"]) == {"a1", "a2"}


def test_a_team_that_does_not_fit_is_told_so():
    positions = (Position(id="x", capacity=2, ranking=("solo", "t")),)
    apps = (Applicant(id="solo", preferences=("x",)), Applicant(id="m1"), Applicant(id="m2"))
    result = solve(PlacementProblem(positions=positions, applicants=apps,
                                    teams=(Team(id="t", members=("m1", "m2"), preferences=("x",)),)))
    assert result.assignments == {"solo": "x"}
    assert result.unplaced["m1"][0]["reason"] == "team_does_not_fit"
    assert result.unplaced["m1"] == result.unplaced["m2"]


@pytest.mark.parametrize("bad, fragment", [
    (dict(applicants=(Applicant(id="a", preferences=("nowhere",)),)), "unknown position"),
    (dict(applicants=(Applicant(id="a"), Applicant(id="a"))), "twice"),
    (dict(applicants=(Applicant(id="a"),), teams=(Team(id="t", members=("a", "ghost"), preferences=()),)),
     "not an applicant"),
    (dict(applicants=(Applicant(id="a"),), positions=(Position(id="x", capacity=1, reserved={"c": 2}),)),
     "reserved seats"),
])
def test_inconsistent_rounds_are_refused_with_a_reason(bad, fragment):
    kwargs = dict(positions=(Position(id="x", capacity=1),), applicants=())
    kwargs.update(bad)
    with pytest.raises(PlacementInputError, match=fragment):
        solve(PlacementProblem(**kwargs))


def test_every_unplaced_reason_is_worded_in_chinese_and_english():
    positions = (Position(id="x", title="数控加工实习岗", capacity=1, ranking=("a2", "a1")),)
    apps = (Applicant(id="a1", preferences=("x",)), Applicant(id="a2", preferences=("x",)),
            Applicant(id="a3", preferences=("x",)), Applicant(id="a4", preferences=()))
    result = solve(PlacementProblem(positions=positions, applicants=apps, seed=1))
    full = result.unplaced["a1"][0]
    assert full["detail"] == "数控加工实习岗 filled its 1 seats with 1 higher-standing applicants"
    assert full["detail_zh"] == "“数控加工实习岗”的 1 个名额已由 1 位排名更靠前的申请人占满"
    assert "未将您列入" in result.unplaced["a3"][0]["detail_zh"]
    assert result.unplaced["a4"][0]["detail_zh"] == "志愿表中没有填写岗位"
    for code, (en, zh) in REASON_TEXT.items():
        assert en.isascii() and any("\u4e00" <= ch <= "\u9fff" for ch in zh), code
