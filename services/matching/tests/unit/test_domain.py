"""Pure rules: opportunity and match state machines, expiry, pending cap, districts, successors, USCC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common.errors import InvalidTransition, Unprocessable
from matching.domain import (
    MATCH_TRANSITIONS,
    OPPORTUNITY_TRANSITIONS,
    MatchAction,
    MatchStatus,
    OpportunityAction,
    OpportunityStatus,
    Side,
    check_opening,
    check_pending_cap,
    district_affinity,
    expiry_time,
    match_next,
    opportunity_next,
    outcome_success_rate,
    resolve_successor,
    uscc_is_valid,
)

pytestmark = pytest.mark.unit
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_an_opportunity_goes_from_draft_to_open_to_matched_and_back_when_seats_free():
    s = opportunity_next("draft", "open")
    assert s == OpportunityStatus.OPEN
    assert opportunity_next(s, "match") == OpportunityStatus.MATCHED
    assert opportunity_next("matched", "reopen") == OpportunityStatus.OPEN
    assert opportunity_next("open", "expire") == OpportunityStatus.EXPIRED


@pytest.mark.parametrize("status", list(OpportunityStatus))
@pytest.mark.parametrize("action", list(OpportunityAction))
def test_every_refused_opportunity_transition_names_the_allowed_ones(status, action):
    if (status, action) in OPPORTUNITY_TRANSITIONS:
        return
    with pytest.raises(InvalidTransition) as err:
        opportunity_next(status, action)
    assert err.value.extensions["allowed"] == sorted(a.value for (s, a) in OPPORTUNITY_TRANSITIONS if s == status)
    assert err.value.status == 409


def test_closed_and_expired_opportunities_are_final():
    for final in ("closed", "expired"):
        with pytest.raises(InvalidTransition, match="final status"):
            opportunity_next(final, "open")


def test_opening_needs_a_future_deadline_and_capacity():
    check_opening(deadline=NOW + timedelta(days=1), now=NOW, capacity=1)
    check_opening(deadline=None, now=NOW, capacity=3)
    with pytest.raises(Unprocessable, match="already passed"):
        check_opening(deadline=NOW, now=NOW, capacity=1)
    with pytest.raises(Unprocessable, match="capacity"):
        check_opening(deadline=None, now=NOW, capacity=0)


def test_a_match_needs_the_recipient_to_accept_and_then_runs_to_completion():
    s = match_next("proposed", "accept", side=Side.RECIPIENT)
    s = match_next(s, "agree", side=Side.PROPOSER)
    s = match_next(s, "start", side=Side.EITHER)
    assert match_next(s, "complete", side=Side.RECIPIENT) == MatchStatus.COMPLETED


def test_the_proposer_cannot_accept_its_own_proposal_nor_the_recipient_withdraw_it():
    with pytest.raises(InvalidTransition, match="only the recipient"):
        match_next("proposed", "accept", side=Side.PROPOSER)
    with pytest.raises(InvalidTransition, match="only the proposer"):
        match_next("proposed", "withdraw", side=Side.RECIPIENT)
    with pytest.raises(InvalidTransition, match="only the recipient"):
        match_next("proposed", "accept", side=Side.EITHER)  # the office cannot accept for an institution


def test_only_the_system_expires_proposals():
    assert match_next("proposed", "expire", side=Side.SYSTEM) == MatchStatus.EXPIRED
    with pytest.raises(InvalidTransition):
        match_next("proposed", "expire", side=Side.PROPOSER)


@pytest.mark.parametrize("status", list(MatchStatus))
@pytest.mark.parametrize("action", list(MatchAction))
def test_every_refused_match_transition_is_409_with_allowed_actions(status, action):
    if (status, action) in MATCH_TRANSITIONS:
        return
    with pytest.raises(InvalidTransition) as err:
        match_next(status, action, side=Side.SYSTEM)
    assert err.value.extensions["allowed"] == sorted(a.value for (s, a) in MATCH_TRANSITIONS if s == status)


def test_a_proposal_expires_after_its_ttl_but_never_after_the_deadline():
    assert expiry_time(proposed_at=NOW, ttl=timedelta(days=14), opportunity_deadline=None) == NOW + timedelta(days=14)
    deadline = NOW + timedelta(days=3)
    assert expiry_time(proposed_at=NOW, ttl=timedelta(days=14), opportunity_deadline=deadline) == deadline


def test_the_pending_cap_refuses_one_proposal_too_many():
    check_pending_cap(pending=9, cap=10)
    with pytest.raises(Unprocessable, match="cap is 10"):
        check_pending_cap(pending=10, cap=10)


def test_lingang_neighbours_score_half_and_far_districts_nothing():
    assert district_affinity("lingang", "lingang") == 1.0
    assert district_affinity("lingang", "fengxian") == 0.5
    assert district_affinity("fengxian", "lingang") == 0.5
    assert district_affinity("lingang", "pudong") == 0.5
    assert district_affinity("lingang", "chongming") == 0.0
    assert district_affinity(None, "pudong") == 0.0


def test_neighbourhood_is_symmetric():
    from matching.domain import DISTRICT_NEIGHBOURS
    for a, ns in DISTRICT_NEIGHBOURS.items():
        for b in ns:
            assert a in DISTRICT_NEIGHBOURS[b], f"{a} borders {b} but not the other way round"


def test_successors_are_followed_through_chains_and_cycles_stop():
    assert resolve_successor("a", {"a": "b", "b": "c"}) == "c"
    assert resolve_successor("x", {"a": "b"}) == "x"
    assert resolve_successor("a", {"a": "b", "b": "a"}) == "b"


def test_past_outcomes_are_smoothed():
    assert outcome_success_rate(completed=0, cancelled=0) == 0.5
    assert outcome_success_rate(completed=3, cancelled=0) == 0.8
    assert outcome_success_rate(completed=0, cancelled=2) == 0.25


def test_uscc_check_character():
    assert uscc_is_valid("91350100M000100Y43")
    assert not uscc_is_valid("91350100M000100Y4Z")
    assert uscc_is_valid("91310000132214209T")
    assert not uscc_is_valid("short")
