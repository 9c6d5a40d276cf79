"""Competitions: teams with caps and join codes, submissions, judges, conflicts of interest fed by registry events,
weighted rubric scoring, ranking with ties, scoreboard freeze, awards, results as events and open data."""

from __future__ import annotations

import asyncio
import csv
import io

import orjson
import pytest

from services.events.tests.integration.helpers import (
    OFFICE,
    alliance_event,
    alliance_members,
    events_service,
    feed_institutions,
    institution_event,
    member,
    new_id,
    open_activity,
)
from tests.support.harness import auth, produce, read_topic, wait_until

pytestmark = pytest.mark.integration

RUBRIC = [
    {"key": "innovation", "label_zh": "创新", "weight": 40, "max_points": 10},
    {"key": "craft", "label_zh": "工艺", "weight": 40, "max_points": 10},
    {"key": "presentation", "label_zh": "展示", "weight": 20, "max_points": 5},
]


async def _form_team(svc, act_id, track_id, name, inst, captain, *others):
    r = await svc.http.post(f"/activities/{act_id}/teams", headers=captain,
                            json={"track_id": track_id, "name": name, "institution_id": inst})
    assert r.status_code == 201, r.text
    team = r.json()
    for h in others:
        j = await svc.http.post("/teams/join", json={"join_code": team["join_code"]}, headers=h)
        assert j.status_code == 200, j.text
    return team


async def test_a_skills_competition_from_teams_to_published_results(broker):
    a, b, c, old_d, ent_e, neutral, org = (new_id() for _ in range(7))
    alliance = new_id()
    async with events_service(broker) as svc:
        await feed_institutions(svc, broker, (org, "临港新片区管委会"), (a, "上海电子信息职业技术学院"),
                                (b, "上海城建职业学院"), (c, "上海工程技术大学"), (old_d, "上海某技师学院"),
                                (ent_e, "上海华虹集团"), (neutral, "上海市职业技能鉴定中心"))
        # the registry reports a merger and an alliance: both make institutions related
        await produce(broker.bootstrap, "registry.institution.v1", [institution_event(
            old_d, "上海某技师学院", version=2, status="withdrawn", successor_id=c, type_="merged")],
            key=old_d.encode())
        await produce(broker.bootstrap, "registry.alliance.v1",
                      [alliance_event(alliance, "临港集成电路产教联盟", [ent_e, b])], key=alliance.encode())
        await wait_until(lambda: alliance_members(svc, alliance), what="alliance projected")
        await svc.idle()

        act = await open_activity(svc, org, kind="competition", title_zh="临港工匠技能大赛", capacity=3)
        aid = act["id"]
        track = await svc.http.post(f"/activities/{aid}/tracks", headers=OFFICE, json={
            "name_zh": "高职组", "team_min": 2, "team_max": 3, "rubric": RUBRIC})
        assert track.status_code == 201, track.text
        tid = track.json()["id"]

        cap_a, cap_b, cap_c, cap_x = (member(sub=s) for s in ("cap-a", "cap-b", "cap-c", "cap-x"))
        mates = [member(sub=f"mate-{i}") for i in range(6)]
        ta = await _form_team(svc, aid, tid, "电子一队", a, cap_a, mates[0], mates[1])
        full = await svc.http.post("/teams/join", json={"join_code": ta["join_code"]}, headers=mates[2])
        assert full.status_code == 409 and "at most 3" in full.json()["detail"]
        twice = await svc.http.post(f"/activities/{aid}/teams", headers=mates[0],
                                    json={"track_id": tid, "name": "另一队", "institution_id": a})
        assert twice.status_code == 409
        tb = await _form_team(svc, aid, tid, "城建队", b, cap_b, mates[2])
        tc = await _form_team(svc, aid, tid, "工程大学队", c, cap_c)
        assert tc["registration_status"] == "confirmed"
        tx = await _form_team(svc, aid, tid, "第四队", neutral, cap_x)
        assert tx["registration_status"] == "waitlisted", "the competition takes three teams"

        outsider = (await svc.http.get(f"/teams/{ta['id']}")).json()
        assert outsider["join_code"] is None and outsider["members"] is None
        assert len((await svc.http.get(f"/teams/{ta['id']}", headers=mates[1])).json()["members"]) == 3

        entry = {"title": "晶圆缺陷检测", "links": ["https://example.cn/demo"]}
        small = await svc.http.put(f"/teams/{tc['id']}/submission", json=entry, headers=cap_c)
        assert small.status_code == 422 and "at least 2" in small.json()["detail"]
        await svc.http.post("/teams/join", json={"join_code": tc["join_code"]}, headers=mates[3])
        for team, head in ((ta, cap_a), (tb, mates[2]), (tc, cap_c)):
            s = await svc.http.put(f"/teams/{team['id']}/submission", json=entry, headers=head)
            assert s.status_code == 200, s.text
        assert (await svc.http.put(f"/teams/{tx['id']}/submission", json=entry, headers=cap_x)).status_code == 409
        assert (await svc.http.put(f"/teams/{ta['id']}/submission", json=entry,
                                   headers=cap_b)).status_code == 404

        judges = {"j-ent": ent_e, "j-old": old_d, "j-a": a, "j-neutral": neutral}
        for sub, inst in judges.items():
            r = await svc.http.post(f"/activities/{aid}/tracks/{tid}/judges", headers=OFFICE,
                                    json={"judge_id": sub, "institution_id": inst})
            assert r.status_code == 201, r.text
        j = {sub: auth("judge", sub=sub) for sub in judges}
        points = {"innovation": 8, "craft": 6, "presentation": 5}

        async def score(team, judge, pts=points):
            return await svc.http.put(f"/teams/{team['id']}/scores/me", json={"points": pts}, headers=j[judge])

        refused = {
            "j-a": (ta, "belongs to the team's institution"),
            "j-ent": (tb, "临港集成电路产教联盟"),
            "j-old": (tc, "merger"),
        }
        for judge, (team, why) in refused.items():
            r = await score(team, judge)
            assert r.status_code == 403, r.text
            assert "conflict of interest" in r.json()["detail"] and why in r.json()["detail"]
        view = (await svc.http.get(f"/activities/{aid}/judging", headers=j["j-ent"])).json()["items"]
        assert {v["team_name"]: bool(v["conflict"]) for v in view} == {"电子一队": False, "城建队": True,
                                                                       "工程大学队": False}
        assert (await svc.http.get(f"/activities/{aid}/judging", headers=auth("judge"))).status_code == 404
        assert (await svc.http.put(f"/teams/{ta['id']}/scores/me", json={"points": points},
                                   headers=member())).status_code == 403
        bad = await score(ta, "j-neutral", {"innovation": 11, "craft": 6, "presentation": 5})
        assert bad.status_code == 422

        # B scores the same total as A and C, but lower on the heaviest (first-listed) criterion
        assert (await score(tb, "j-neutral", {"innovation": 6, "craft": 8, "presentation": 5})).json()["total"] == 76
        freeze = await svc.http.post(f"/activities/{aid}/scoreboard/freeze", headers=OFFICE)
        assert freeze.status_code == 200 and freeze.json()["status"] == "frozen"
        assert (await svc.http.post(f"/activities/{aid}/scoreboard/freeze", headers=OFFICE)).status_code == 409
        assert (await score(ta, "j-neutral")).json()["total"] == 76
        assert (await score(tc, "j-neutral")).status_code == 200

        public = (await svc.http.get(f"/activities/{aid}/scoreboard")).json()
        assert public["live"] is False
        assert next((x["team_name"], x["judges"]) for x in public["board"]) == ("城建队", 1), "frozen before A scored"
        live = (await svc.http.get(f"/activities/{aid}/scoreboard", headers=OFFICE)).json()
        assert live["live"] is True
        # tie on 76: A and C beat B on innovation; A beats C by submitting first
        assert [(x["rank"], x["team_name"], x["score"]) for x in live["board"]] == [
            (1, "电子一队", 76.0), (2, "工程大学队", 76.0), (3, "城建队", 76.0)]
        assert "heaviest" in live["tie_break"]

        closed = await svc.http.get(f"/open-data/competitions/{aid}/results.json")
        assert closed.status_code == 404
        pub = await svc.http.post(f"/activities/{aid}/results", headers=OFFICE, json={"awards": [
            {"name": "一等奖", "count": 1}, {"name": "二等奖", "count": 1}, {"name": "三等奖", "count": 1}]})
        assert pub.status_code == 200 and pub.json()["status"] == "results_published"
        assert (await score(tb, "j-neutral")).status_code == 409, "scores are final once results are out"

        data = (await svc.http.get(f"/open-data/competitions/{aid}/results.json")).json()
        assert [(r["rank"], r["team_name"], r["award"]) for r in data["results"]] == [
            (1, "电子一队", "一等奖"), (2, "工程大学队", "二等奖"), (3, "城建队", "三等奖")]
        assert data["results"][0]["institution_name"] == "上海电子信息职业技术学院"
        rows = list(csv.DictReader(io.StringIO(
            (await svc.http.get(f"/open-data/competitions/{aid}/results.csv")).content.decode("utf-8-sig"))))
        assert rows[0]["team_name"] == "电子一队" and rows[0]["award"] == "一等奖"
        assert (await svc.http.get(f"/activities/{aid}/scoreboard")).json()["board"][0]["award"] == "一等奖"

        records = await read_topic(broker.bootstrap, "events.competition.v1",
                                   until=lambda rs: any(b"results_published" in r.value for r in rs
                                                        if r.key == aid.encode()))
        mine = [orjson.loads(r.value) for r in records if r.key == aid.encode()]
        kinds = [e["type"].rsplit(".", 1)[1] for e in mine]
        assert kinds.count("team_registered") == 4 and kinds.count("submission_received") == 3
        assert kinds[-2:] == ["scoreboard_frozen", "results_published"]
        final = mine[-1]["data"]
        assert [(r["rank"], r["team_name"], r["award"]) for r in final["results"]][:1] == [(1, "电子一队", "一等奖")]
        assert final["tie_break"] and final["status"] == "results_published"


async def test_a_rush_of_joins_never_overfills_a_team_and_a_perfect_tie_shares_rank_and_award(broker):
    org, school = new_id(), new_id()
    async with events_service(broker) as svc:
        await feed_institutions(svc, broker, (org, "临港新片区管委会"), (school, "上海科技管理学校"))
        act = await open_activity(svc, org, kind="competition", title_zh="临港菁英挑战赛")
        tid = (await svc.http.post(f"/activities/{act['id']}/tracks", headers=OFFICE, json={
            "name_zh": "中职组", "team_min": 1, "team_max": 3, "rubric": RUBRIC})).json()["id"]
        team = await _form_team(svc, act["id"], tid, "科技队", school, member(sub="captain"))
        rush = await asyncio.gather(*(svc.http.post("/teams/join", json={"join_code": team["join_code"]},
                                                    headers=member(sub=f"rush-{i}")) for i in range(8)))
        assert sorted(r.status_code for r in rush) == [200, 200] + [409] * 6
        members = (await svc.http.get(f"/teams/{team['id']}", headers=OFFICE)).json()["members"]
        assert len(members) == 3

        # a perfect tie: same scores, same heaviest-criterion share, submitted at the same instant
        twin = await _form_team(svc, act["id"], tid, "管理队", org, member(sub="captain-2"))
        await svc.http.post(f"/activities/{act['id']}/tracks/{tid}/judges", headers=OFFICE,
                            json={"judge_id": "judge-z", "institution_id": None})
        svc.app.state.clock.stop()
        for t, head in ((team, member(sub="captain")), (twin, member(sub="captain-2"))):
            assert (await svc.http.put(f"/teams/{t['id']}/submission", json={"title": "作品"},
                                       headers=head)).status_code == 200
        svc.app.state.clock.resume()
        for t in (team, twin):
            r = await svc.http.put(f"/teams/{t['id']}/scores/me", headers=auth("judge", sub="judge-z"),
                                   json={"points": {"innovation": 7, "craft": 7, "presentation": 3}})
            assert r.status_code == 200, r.text
        subs = (await svc.http.get(f"/activities/{act['id']}/submissions", headers=OFFICE)).json()["items"]
        assert len(subs) == 2 and subs[0]["submitted_at"] == subs[1]["submitted_at"]
        scores = (await svc.http.get(f"/activities/{act['id']}/scores", headers=OFFICE)).json()["items"]
        assert [x["total"] for x in scores] == [68.0, 68.0]
        assert (await svc.http.get(f"/activities/{act['id']}/scores",
                                   headers=auth("institution_admin", institution=school))).status_code == 403
        board = (await svc.http.get(f"/activities/{act['id']}/scoreboard")).json()["board"]
        assert [(x["rank"], x["score"]) for x in board] == [(1, 68.0), (1, 68.0)]
        await svc.http.post(f"/activities/{act['id']}/results", headers=OFFICE,
                            json={"awards": [{"name": "金奖", "count": 1}, {"name": "银奖", "count": 1}]})
        results = (await svc.http.get(f"/open-data/competitions/{act['id']}/results.json")).json()["results"]
        assert [r["award"] for r in results] == ["金奖", "金奖"], "a tie at the boundary shares the better award"

        wrong = await svc.http.post(f"/activities/{act['id']}/teams", headers=member(institution=org),
                                    json={"track_id": tid, "name": "冒名队", "institution_id": school})
        assert wrong.status_code == 403, "a team represents its captain's own institution"
        await svc.http.post(f"/activities/{act['id']}/transitions", json={"status": "registration_closed"},
                            headers=OFFICE)
        late = await svc.http.post(f"/activities/{act['id']}/teams", headers=member(),
                                   json={"track_id": tid, "name": "迟到队", "institution_id": school})
        assert late.status_code == 409 and "not open" in late.json()["detail"]
        assert (await svc.http.post("/teams/join", json={"join_code": "NOSUCHCODE"},
                                    headers=member())).status_code == 404
