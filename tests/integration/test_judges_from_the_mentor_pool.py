"""A judge drawn from the registry's mentor pool is checked for conflicts of interest against the institution the
registry holds for them: registry → Kafka (registry.mentor.v1, read under the events service's own ACLs) → events."""

from __future__ import annotations

import pytest
from sqlalchemy import select

import events.main
import registry.main
from events.config import Settings as EventsSettings
from events.models import Organiser
from registry.config import Settings as RegistrySettings
from services.events.tests.integration.helpers import open_activity
from services.events.tests.integration.test_competitions import RUBRIC, _form_team
from services.registry.tests.support import school
from tests.support.harness import auth, fresh_database, run_service, wait_until

pytestmark = pytest.mark.integration

OFFICE = auth("office_admin")


async def test_a_mentor_judge_may_not_score_a_team_of_the_institution_whose_pool_they_are_in(broker):
    async with (
        run_service(registry.main.create_app, RegistrySettings, broker=broker,
                    db_url=await fresh_database("registry")) as reg,
        run_service(events.main.create_app, EventsSettings, broker=broker,
                    db_url=await fresh_database("events")) as evt,
    ):
        ids = {}
        for name in ("临港新片区管委会", "上海丙职业技术学院", "上海丁职业技术学院"):
            r = await reg.http.post("/institutions", json=school(name), headers=OFFICE)
            assert r.status_code == 201, r.text
            ids[name] = r.json()["id"]
        org, bing, ding = ids.values()
        bing_admin = auth("institution_admin", institution=bing)
        mentor = await reg.http.post("/mentors", headers=bing_admin, json={
            "institution_id": bing, "title": "industry_professor", "name": "王评委", "phone": "13600000001",
            "industries": ["integrated_circuits"]})
        assert mentor.status_code == 201, mentor.text
        consent = await reg.http.post(f"/mentors/{mentor.json()['id']}/consent", headers=bing_admin,
                                      json={"given": True, "method": "signed_form"})
        assert consent.status_code == 200 and consent.json()["status"] == "listed", consent.text

        async def projected():
            async with evt.runtime.sessions() as s:
                return len((await s.execute(select(Organiser.id).where(Organiser.id.in_(ids.values())))).all()) == 3

        await wait_until(projected, what="the three institutions projected into events")
        act = await open_activity(evt, org, kind="competition", title_zh="专家评委回避测试赛", capacity=5)
        tid = (await evt.http.post(f"/activities/{act['id']}/tracks", headers=OFFICE, json={
            "name_zh": "高职组", "team_min": 1, "team_max": 3, "rubric": RUBRIC})).json()["id"]
        teams = {}
        for inst, cap in ((bing, "cap-bing"), (ding, "cap-ding")):
            captain = auth("member", sub=cap, institution=inst)
            team = await _form_team(evt, act["id"], tid, f"队-{cap}", inst, captain)
            r = await evt.http.put(f"/teams/{team['id']}/submission", json={"title": "作品"}, headers=captain)
            assert r.status_code == 200, r.text
            teams[inst] = team

        async def assigned():
            r = await evt.http.post(f"/activities/{act['id']}/tracks/{tid}/judges", headers=OFFICE,
                                    json={"judge_id": "expert-wang", "mentor_id": mentor.json()["id"]})
            return r if r.status_code == 201 else None

        await wait_until(assigned, what="the listed mentor projected into events")
        judge = auth("judge", sub="expert-wang")
        points = {"innovation": 8, "craft": 6, "presentation": 5}
        own = await evt.http.put(f"/teams/{teams[bing]['id']}/scores/me", json={"points": points}, headers=judge)
        assert own.status_code == 403 and "conflict of interest" in own.json()["detail"], own.text
        other = await evt.http.put(f"/teams/{teams[ding]['id']}/scores/me", json={"points": points}, headers=judge)
        assert other.status_code == 200, other.text

