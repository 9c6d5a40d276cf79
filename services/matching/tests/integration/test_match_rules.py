"""Matches: seats beyond what an opportunity has left are refused (under its row lock, so two accepts at the same
instant cannot overfill it); every step and note goes into a progress log both sides read; outsiders are told
nothing (404) on reads and actions alike; out-of-range parameters are 422."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

import matching.main
from matching.config import Settings
from services.matching.tests.integration.test_matching_flow import institution, publish_institutions, wait_known
from tests.support.harness import auth, fresh_database, run_service

pytestmark = pytest.mark.integration


async def _platform(svc, broker, n: int) -> list[dict]:
    insts = [institution(f"上海规则测试{i}有限公司", "lingang", ["integrated_circuits"], ["芯片"]) for i in range(n)]
    await publish_institutions(broker.bootstrap, *insts)
    for inst in insts:
        await wait_known(svc, inst["id"])
    return insts


async def _open(svc, owner: dict, capacity: int) -> dict:
    body = {"kind": "order_class", "institution_id": owner["id"], "title_zh": "规则测试订单班", "description_zh": "x",
            "industries": ["integrated_circuits"], "district": "lingang", "capacity": capacity, "open": True,
            "deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat()}
    r = await svc.http.post("/opportunities", json=body, headers=auth("institution_admin", institution=owner["id"]))
    assert r.status_code == 201, r.text
    return r.json()


async def _propose(svc, opp: dict, proposer: dict, seats: int):
    return await svc.http.post("/matches", json={"opportunity_id": opp["id"], "seats": seats},
                               headers=auth("institution_admin", institution=proposer["id"]))


async def test_seats_beyond_what_is_left_are_refused_even_when_two_accepts_race(broker):
    async with run_service(matching.main.create_app, Settings, broker=broker,
                           db_url=await fresh_database("matching")) as svc:
        owner, a, b, c = await _platform(svc, broker, 4)
        owner_admin = auth("institution_admin", institution=owner["id"])
        opp = await _open(svc, owner, capacity=2)
        too_many = await _propose(svc, opp, a, 5)
        assert too_many.status_code == 409 and too_many.json()["seats_left"] == 2

        opp = await _open(svc, owner, capacity=3)
        m1, m2 = [(await _propose(svc, opp, who, 2)).json() for who in (a, b)]
        answers = await asyncio.gather(*[svc.http.post(f"/matches/{m['id']}/accept", headers=owner_admin)
                                         for m in (m1, m2)])
        assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
        refused = next(r for r in answers if r.status_code == 409).json()
        assert refused["seats_left"] == 1
        assert (await svc.http.get(f"/opportunities/{opp['id']}")).json()["seats_taken"] == 2
        assert (await _propose(svc, opp, c, 2)).status_code == 409, "only one seat is left"
        assert (await _propose(svc, opp, c, 1)).status_code == 201
        shrink = await svc.http.patch(f"/opportunities/{opp['id']}", json={"capacity": 1}, headers=owner_admin)
        assert shrink.status_code == 409 and shrink.json()["seats_taken"] == 2, "capacity never below seats held"


async def test_the_progress_log_keeps_every_note_with_who_and_when_and_outsiders_get_404(broker):
    async with run_service(matching.main.create_app, Settings, broker=broker,
                           db_url=await fresh_database("matching")) as svc:
        owner, partner, outsider = await _platform(svc, broker, 3)
        owner_admin = auth("institution_admin", institution=owner["id"], sub="owner-admin")
        partner_admin = auth("institution_admin", institution=partner["id"], sub="partner-admin")
        opp = await _open(svc, owner, capacity=1)
        m = (await svc.http.post("/matches", json={"opportunity_id": opp["id"], "message": "我们有微电子专业"},
                                 headers=partner_admin)).json()
        url = f"/matches/{m['id']}"

        strangers = [auth("institution_admin", institution=outsider["id"]), auth("member", institution=outsider["id"])]
        nowhere = "/matches/00000000-0000-0000-0000-000000000000"
        for who in strangers:  # an outsider learns nothing: the same answer as for a match that does not exist
            assert (await svc.http.get(url, headers=who)).status_code == 404
            for base in (url, nowhere):
                assert {(await svc.http.post(f"{base}/accept", headers=who)).status_code,
                        (await svc.http.post(f"{base}/notes", json={"note": "x"}, headers=who)).status_code} == (
                    {404} if who is strangers[0] else {403}), "an admin gets 404; a member's role is refused first"
        member = auth("member", institution=owner["id"])
        assert (await svc.http.get(url, headers=member)).status_code == 200
        assert (await svc.http.post(f"{url}/accept", headers=member)).status_code == 403, "seen, but not theirs to act"

        assert (await svc.http.post(f"{url}/accept", headers=owner_admin, json={"note": "欢迎合作"})).status_code == 200
        assert (await svc.http.post(f"{url}/agree", headers=partner_admin)).status_code == 200
        started = await svc.http.post(f"{url}/start", headers=partner_admin, json={"note": "首批20名学生已入班"})
        assert started.status_code == 200, started.text
        noted = await svc.http.post(f"{url}/notes", json={"note": "第三个月回访：进展顺利"}, headers=owner_admin)
        assert noted.status_code == 200 and noted.json()["status"] == "in_progress"
        office = await svc.http.post(f"{url}/notes", json={"note": "办公室已督导"}, headers=auth("office_admin"))
        assert office.status_code == 200

        for reader in (owner_admin, partner_admin, member):
            log = (await svc.http.get(url, headers=reader)).json()["progress"]
            assert [(e["action"], e["note"]) for e in log] == [
                ("propose", "我们有微电子专业"), ("accept", "欢迎合作"), ("agree", ""), ("start", "首批20名学生已入班"),
                ("note", "第三个月回访：进展顺利"), ("note", "办公室已督导")]
            assert [e["by"] for e in log][:5] == ["partner-admin", "owner-admin", "partner-admin", "partner-admin",
                                                  "owner-admin"]
            assert log[5]["by"].endswith("(office)") and log[5]["by_institution_id"] is None
            assert log[3]["by_institution_id"] == partner["id"] and log[3]["status"] == "in_progress"
            assert all(datetime.fromisoformat(e["at"]) for e in log)
        listed = (await svc.http.get("/matches", headers=partner_admin)).json()
        assert next(x for x in listed if x["id"] == m["id"])["progress"][-1]["note"] == "办公室已督导"


async def test_out_of_range_years_and_deadlines_are_422(broker):
    async with run_service(matching.main.create_app, Settings, broker=broker,
                           db_url=await fresh_database("matching")) as svc:
        for year in ("0", "99999999999999999999"):
            r = await svc.http.get("/outcomes", params={"year": year})
            assert r.status_code == 422, r.text
        [owner] = await _platform(svc, broker, 1)
        body = {"kind": "order_class", "institution_id": owner["id"], "title_zh": "远期", "description_zh": "x",
                "industries": ["integrated_circuits"], "district": "lingang", "deadline": "9999-12-31T23:59:59-01:00"}
        r = await svc.http.post("/opportunities", json=body, headers=auth("institution_admin", institution=owner["id"]))
        assert r.status_code == 422 and "out of range" in r.text
