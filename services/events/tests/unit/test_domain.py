"""The events service's pure rules: lifecycle, seats, scoring, ranking, awards, conflicts of interest."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from common.errors import Conflict, Forbidden, InvalidTransition, Unprocessable
from events import domain
from events.domain import ActivityStatus as S
from events.domain import AwardTier, Criterion, Entry

pytestmark = pytest.mark.unit

CHAIN = [S.DRAFT, S.PUBLISHED, S.REGISTRATION_OPEN, S.REGISTRATION_CLOSED, S.ONGOING, S.FINISHED, S.ARCHIVED]


def test_the_lifecycle_moves_one_step_forward_or_to_cancelled_before_finishing():
    for here, nxt in itertools.pairwise(CHAIN):
        assert domain.check_transition(here, nxt) == nxt
    for here in CHAIN[:5]:
        assert domain.check_transition(here, S.CANCELLED) == S.CANCELLED
    assert domain.allowed_transitions(S.REGISTRATION_OPEN) == ["registration_closed", "cancelled"]
    assert domain.allowed_transitions(S.FINISHED) == ["archived"]
    assert domain.allowed_transitions(S.CANCELLED) == []


@pytest.mark.parametrize("here", list(S))
def test_every_other_transition_is_refused_naming_the_allowed_ones(here):
    allowed = set(domain.allowed_transitions(here))
    for target in S:
        if target.value in allowed:
            continue
        with pytest.raises(InvalidTransition) as err:
            domain.check_transition(here, target)
        assert err.value.extensions["allowed"] == domain.allowed_transitions(here)
        assert here.value in err.value.detail


def test_finished_and_archived_activities_cannot_be_cancelled():
    for here in (S.FINISHED, S.ARCHIVED, S.CANCELLED):
        with pytest.raises(InvalidTransition):
            domain.check_transition(here, S.CANCELLED)


def test_seats_and_offers():
    assert domain.seat_available(capacity=None, held=10_000)
    assert domain.seat_available(capacity=3, held=2) and not domain.seat_available(capacity=3, held=3)
    assert domain.offers_to_make(capacity=3, held=1, waiting=5) == 2
    assert domain.offers_to_make(capacity=3, held=3, waiting=5) == 0
    assert domain.offers_to_make(capacity=3, held=0, waiting=0) == 0
    assert domain.offers_to_make(capacity=None, held=9, waiting=4) == 4


def test_an_offer_lapses_at_its_deadline():
    now = datetime(2027, 1, 1, tzinfo=UTC)
    deadline = domain.offer_deadline(now, 3600)
    assert deadline == now + timedelta(hours=1)
    assert not domain.offer_lapsed(deadline, now + timedelta(minutes=59))
    assert domain.offer_lapsed(deadline, deadline)


def test_registration_needs_an_open_activity():
    domain.registration_open_for(S.REGISTRATION_OPEN)
    with pytest.raises(InvalidTransition, match="not open"):
        domain.registration_open_for(S.PUBLISHED)


def test_participant_keys_make_registration_idempotent_per_kind():
    assert domain.participant_key("individual", "u1") == "individual:u1"
    assert domain.participant_key("team", "u1") != domain.participant_key("individual", "u1")


def test_team_size_caps():
    domain.check_team_size(members=4, team_max=4)
    with pytest.raises(Conflict, match="at most 4"):
        domain.check_team_size(members=5, team_max=4)
    with pytest.raises(Unprocessable, match="at least 2"):
        domain.check_team_complete(members=1, team_min=2)


def test_join_codes_avoid_ambiguous_characters():
    codes = {domain.new_join_code() for _ in range(200)}
    assert len(codes) == 200
    assert not any(set(code) & set("01IO") for code in codes)


RUBRIC = [Criterion("innovation", 40, 10), Criterion("craft", 40, 10), Criterion("presentation", 20, 5)]


def test_weighted_score_is_out_of_100():
    assert domain.weighted_score(RUBRIC, {"innovation": 10, "craft": 10, "presentation": 5}) == 100
    assert domain.weighted_score(RUBRIC, {"innovation": 5, "craft": 10, "presentation": 0}) == 60


def test_weighted_score_refuses_missing_unknown_and_out_of_range_points():
    with pytest.raises(Unprocessable, match="missing: presentation"):
        domain.weighted_score(RUBRIC, {"innovation": 5, "craft": 5})
    with pytest.raises(Unprocessable, match="unknown: charm"):
        domain.weighted_score(RUBRIC, {"innovation": 5, "craft": 5, "presentation": 1, "charm": 3})
    with pytest.raises(Unprocessable, match=r"0\.\.5"):
        domain.weighted_score(RUBRIC, {"innovation": 5, "craft": 5, "presentation": 6})


def test_rubric_validation():
    with pytest.raises(Unprocessable):
        domain.validate_rubric([])
    with pytest.raises(Unprocessable, match="unique"):
        domain.validate_rubric([Criterion("a", 1, 1), Criterion("a", 2, 1)])


def test_ranking_breaks_ties_by_heaviest_criterion_then_earlier_submission_then_shares_the_rank():
    t0 = datetime(2027, 1, 1, tzinfo=UTC)
    entries = [
        Entry("late", [80.0], [0.9], t0 + timedelta(hours=2)),
        Entry("early", [80.0], [0.9], t0),
        Entry("heavy", [80.0], [1.0], t0 + timedelta(hours=5)),
        Entry("top", [90.0, 92.0], [0.5, 0.5], t0),
        Entry("twin-a", [70.0], [0.7], t0),
        Entry("twin-b", [70.0], [0.7], t0),
        Entry("last", [10.0], [0.1], t0),
    ]
    board = domain.rank(entries)
    assert [(s.rank, s.team_id) for s in board] == [
        (1, "top"), (2, "heavy"), (3, "early"), (4, "late"), (5, "twin-a"), (5, "twin-b"), (7, "last")]
    assert board[0].score == 91.0 and board[0].judges == 2


def test_awards_go_down_the_ranking_and_ties_at_a_boundary_share_the_better_award():
    board = domain.rank([Entry("a", [90.0]), Entry("b", [80.0]), Entry("c", [80.0]), Entry("d", [50.0]),
                         Entry("e", [])])
    awards = domain.assign_awards(board, [AwardTier("一等奖", 1), AwardTier("二等奖", 1), AwardTier("三等奖", 2)])
    assert awards == {"a": "一等奖", "b": "二等奖", "c": "二等奖", "d": "三等奖"}


def test_conflicts_of_interest():
    succ = {"old": "new", "older": "old"}
    alliances = [("临港产教联盟", {"x", "y"})]
    coi = domain.conflict_of_interest
    assert "team's institution" in coi(judge_institutions=["a"], team_institutions=["a"], successor_of={},
                                       alliances=[])
    assert "merger" in coi(judge_institutions=["new"], team_institutions=["older"], successor_of=succ, alliances=[])
    assert "merger" in coi(judge_institutions=["older"], team_institutions=["new"], successor_of=succ, alliances=[])
    assert "临港产教联盟" in coi(judge_institutions=["x"], team_institutions=["y"], successor_of={},
                                 alliances=alliances)
    assert coi(judge_institutions=["x"], team_institutions=["z"], successor_of=succ, alliances=alliances) is None
    assert coi(judge_institutions=[], team_institutions=["z"], successor_of=succ, alliances=alliances) is None


def test_a_judges_own_institution_counts_even_when_the_organiser_gave_none_or_another():
    assert domain.judge_affiliations(assigned=None, token="丙校") == ["丙校"]
    assert domain.judge_affiliations(assigned="甲校", token="丙校") == ["甲校", "丙校"]
    assert domain.judge_affiliations(assigned="甲校", token="甲校") == ["甲校"]
    assert domain.judge_affiliations(assigned=None, token=None) == []
    assert domain.judge_affiliations(assigned=None, token=None, registry="丁校") == ["丁校"]
    assert domain.judge_affiliations(assigned="甲校", token="丙校", registry="丁校") == ["甲校", "丙校", "丁校"]
    judge = domain.judge_affiliations(assigned="甲校", token="丙校")
    assert "丙校" in domain.conflict_of_interest(judge_institutions=judge, team_institutions=["丙校"],
                                                successor_of={}, alliances=[])


def test_a_judge_who_competes_in_the_competition_may_score_no_team_of_it():
    why = domain.conflict_of_interest(judge_institutions=["甲校"], team_institutions=["乙校"], successor_of={},
                                      alliances=[], judge_team="乙校二队")
    assert why == "the judge competes in this competition (member of team 乙校二队)"
    assert domain.conflict_of_interest(judge_institutions=["甲校"], team_institutions=["乙校"], successor_of={},
                                       alliances=[], judge_team=None) is None


def test_a_competition_takes_teams_only():
    domain.check_participant_kind("competition", "team")
    domain.check_participant_kind("conference", "individual")
    domain.check_participant_kind("job_fair", "institution")
    for kind in ("individual", "institution"):
        with pytest.raises(Unprocessable, match="teams only"):
            domain.check_participant_kind("competition", kind)


def test_a_member_bound_to_one_institution_never_represents_another():
    domain.check_represents(member_institution="inst-a", represented="inst-a")
    domain.check_represents(member_institution=None, represented="inst-a")  # a member of no institution is not bound
    domain.check_represents(member_institution="inst-a", represented=None)  # nothing represented
    with pytest.raises(Forbidden) as refused:
        domain.check_represents(member_institution="inst-b", represented="inst-a")
    assert "inst-a" in str(refused.value.detail) and "inst-b" in str(refused.value.detail)
