"""Competitions take teams only; a contestant never judges their own competition; a judge's own institution (in their
token, or as a mentor in the registry's pool) counts in conflicts of interest even when the organiser gave none."""

from __future__ import annotations

import pytest

from events.models import TeamMember
from services.events.tests.integration.helpers import (
    OFFICE,
    events_service,
    feed_institutions,
    feed_mentor,
    member,
    new_id,
    open_activity,
)
from services.events.tests.integration.test_competitions import RUBRIC, _form_team
from tests.support.harness import auth

pytestmark = pytest.mark.integration


async def test_a_competition_takes_teams_only_so_its_capacity_counts_teams(broker):
    org, school = new_id(), new_id()
    async with events_service(broker) as svc:
        await feed_institutions(svc, broker, (org, "临港新片区管委会"), (school, "上海电子信息职业技术学院"))
        act = await open_activity(svc, org, kind="competition", title_zh="只收团队的大赛", capacity=1)
        aid = act["id"]
        for attempt in range(2):  # the first call and a repeat (the fast path remembers the activity's kind)
            alone = await svc.http.post(f"/activities/{aid}/registrations", json={}, headers=member(sub="solo"))
            assert alone.status_code == 422, (attempt, alone.text)
            assert "teams only" in alone.json()["detail"]
        admin = auth("institution_admin", institution=school)
        as_institution = await svc.http.post(f"/activities/{aid}/registrations", headers=admin,
                                             json={"participant_kind": "institution", "institution_id": school})
        assert as_institution.status_code == 422 and "teams only" in as_institution.json()["detail"]
        track = (await svc.http.post(f"/activities/{aid}/tracks", headers=OFFICE, json={
            "name_zh": "高职组", "team_min": 1, "team_max": 3, "rubric": RUBRIC})).json()
        team = await _form_team(svc, aid, track["id"], "唯一一队", school, member(sub="cap-1"))
        assert team["registration_status"] == "confirmed", "the one place went to a team, not to an individual"

        conference = await open_activity(svc, org, title_zh="照常报名的论坛")
        ok = await svc.http.post(f"/activities/{conference['id']}/registrations", json={}, headers=member())
        assert ok.status_code == 201, ok.text


async def judged_track(svc, broker, bing: str, other: str) -> tuple[str, str, dict, dict]:
    """A competition track with one submitting team from 丙校 and one from 丁校: (activity, track, 丙's, 丁's)."""
    org = new_id()
    await feed_institutions(svc, broker, (org, "临港新片区管委会"), (bing, "丙校"), (other, "丁校"))
    act = await open_activity(svc, org, kind="competition", title_zh="利益冲突测试赛", capacity=5)
    aid = act["id"]
    tid = (await svc.http.post(f"/activities/{aid}/tracks", headers=OFFICE, json={
        "name_zh": "本科组", "team_min": 1, "team_max": 3, "rubric": RUBRIC})).json()["id"]
    bing_team = await _form_team(svc, aid, tid, "丙校队", bing, member(sub="cap-bing", institution=bing))
    other_team = await _form_team(svc, aid, tid, "丁校队", other, member(sub="cap-other", institution=other))
    for team, cap in ((bing_team, "cap-bing"), (other_team, "cap-other")):
        r = await svc.http.put(f"/teams/{team['id']}/submission", json={"title": "作品"},
                               headers=member(sub=cap, institution=team["institution_id"]))
        assert r.status_code == 200, r.text
    return aid, tid, bing_team, other_team


async def test_a_judge_from_the_teams_institution_is_refused_even_if_assigned_without_one(broker):
    bing, other = new_id(), new_id()
    async with events_service(broker) as svc:
        aid, tid, bing_team, other_team = await judged_track(svc, broker, bing, other)
        r = await svc.http.post(f"/activities/{aid}/tracks/{tid}/judges", headers=OFFICE,
                                json={"judge_id": "judge-from-bing", "institution_id": None})
        assert r.status_code == 201, r.text
        judge = auth("judge", sub="judge-from-bing", institution=bing)
        points = {"innovation": 8, "craft": 6, "presentation": 5}
        refused = await svc.http.put(f"/teams/{bing_team['id']}/scores/me", json={"points": points}, headers=judge)
        assert refused.status_code == 403 and "conflict of interest" in refused.json()["detail"]
        view = (await svc.http.get(f"/activities/{aid}/judging", headers=judge)).json()["items"]
        assert {v["team_name"]: bool(v["conflict"]) for v in view} == {"丙校队": True, "丁校队": False}
        fine = await svc.http.put(f"/teams/{other_team['id']}/scores/me", json={"points": points}, headers=judge)
        assert fine.status_code == 200, fine.text


async def test_a_judge_from_the_mentor_pool_is_checked_against_their_registry_institution_as_it_is_now(broker):
    bing, other, expert = new_id(), new_id(), new_id()
    async with events_service(broker) as svc:
        aid, tid, bing_team, other_team = await judged_track(svc, broker, bing, other)
        judges = f"/activities/{aid}/tracks/{tid}/judges"
        unknown = await svc.http.post(judges, headers=OFFICE, json={"judge_id": "expert-wang", "mentor_id": expert})
        assert unknown.status_code == 422 and "mentor pool" in unknown.json()["detail"], unknown.text

        await feed_mentor(svc, broker, expert, bing)  # consented and listed, in 丙校's pool
        r = await svc.http.post(judges, headers=OFFICE, json={"judge_id": "expert-wang", "mentor_id": expert})
        assert r.status_code == 201 and r.json()["mentor_id"] == expert and r.json()["institution_id"] is None, r.text
        judge = auth("judge", sub="expert-wang")  # neither the organiser nor the token names an institution
        points = {"innovation": 8, "craft": 6, "presentation": 5}

        async def conflicts() -> dict[str, bool]:
            view = (await svc.http.get(f"/activities/{aid}/judging", headers=judge)).json()["items"]
            return {v["team_name"]: bool(v["conflict"]) for v in view}

        assert await conflicts() == {"丙校队": True, "丁校队": False}
        refused = await svc.http.put(f"/teams/{bing_team['id']}/scores/me", json={"points": points}, headers=judge)
        assert refused.status_code == 403 and "conflict of interest" in refused.json()["detail"], refused.text

        await feed_mentor(svc, broker, expert, other, version=2, type_="updated")  # moved to 丁校 in the registry
        assert await conflicts() == {"丙校队": False, "丁校队": True}
        moved = await svc.http.put(f"/teams/{other_team['id']}/scores/me", json={"points": points}, headers=judge)
        assert moved.status_code == 403, moved.text
        fine = await svc.http.put(f"/teams/{bing_team['id']}/scores/me", json={"points": points}, headers=judge)
        assert fine.status_code == 200, fine.text

        await feed_mentor(svc, broker, expert, other, version=3, type_="unlisted")  # consent withdrawn
        assert await conflicts() == {"丙校队": False, "丁校队": True}, "the affiliation outlives the listing"
        again = await svc.http.post(judges, headers=OFFICE, json={"judge_id": "expert-li", "mentor_id": expert})
        assert again.status_code == 422, "an unlisted mentor is not assigned anew"


async def test_a_contestant_never_judges_the_competition_they_compete_in(broker):
    bing, other = new_id(), new_id()
    async with events_service(broker) as svc:
        aid, tid, bing_team, other_team = await judged_track(svc, broker, bing, other)
        judges = f"/activities/{aid}/tracks/{tid}/judges"
        contestant = await svc.http.post(judges, headers=OFFICE, json={"judge_id": "cap-bing"})
        assert contestant.status_code == 409 and "丙校队" in contestant.json()["detail"], contestant.text

        assert (await svc.http.post(judges, headers=OFFICE, json={"judge_id": "judge-neutral"})).status_code == 201
        as_captain = await svc.http.post(f"/activities/{aid}/teams", headers=member(sub="judge-neutral"),
                                         json={"track_id": tid, "name": "评委自组队", "institution_id": other})
        assert as_captain.status_code == 409 and "judge" in as_captain.json()["detail"], as_captain.text
        as_member = await svc.http.post("/teams/join", json={"join_code": other_team["join_code"]},
                                        headers=member(sub="judge-neutral", institution=other))
        assert as_member.status_code == 409 and "judge" in as_member.json()["detail"], as_member.text

        # a join and an assignment that raced past each other's checks: scoring still refuses the contestant
        async with svc.runtime.sessions() as s, s.begin():
            s.add(TeamMember(activity_id=aid, team_id=other_team["id"], member_id="judge-neutral"))
        judge = auth("judge", sub="judge-neutral")
        points = {"innovation": 8, "craft": 6, "presentation": 5}
        for team in (bing_team, other_team):
            refused = await svc.http.put(f"/teams/{team['id']}/scores/me", json={"points": points}, headers=judge)
            assert refused.status_code == 403 and "competes in this competition" in refused.json()["detail"]
        view = (await svc.http.get(f"/activities/{aid}/judging", headers=judge)).json()["items"]
        assert all("丁校队" in v["conflict"] for v in view), view


async def test_a_draft_is_listed_to_exactly_those_who_may_open_it(broker):
    org, co, stranger = new_id(), new_id(), new_id()
    async with events_service(broker) as svc:
        await feed_institutions(svc, broker, (org, "主办单位"), (co, "协办单位"), (stranger, "无关单位"))
        r = await svc.http.post("/activities", headers=OFFICE, json={
            "kind": "conference", "title_zh": "协办草稿论坛", "organiser_id": org, "co_organiser_ids": [co],
            "venue": "临港会议中心", "starts_at": "2027-06-01T09:00:00", "ends_at": "2027-06-01T17:00:00",
            "audience": ["students"]})
        assert r.status_code == 201, r.text
        draft = r.json()
        for inst, sees in ((org, True), (co, True), (stranger, False)):
            admin = auth("institution_admin", institution=inst)
            opened = await svc.http.get(f"/activities/{draft['id']}", headers=admin)
            listed = (await svc.http.get("/activities", params={"limit": 500}, headers=admin)).json()["items"]
            assert (opened.status_code == 200) is sees, inst
            assert (draft["id"] in [a["id"] for a in listed]) is sees, inst
