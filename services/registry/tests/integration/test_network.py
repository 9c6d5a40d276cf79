"""Bases, alliances and the mentor pool through HTTP and Kafka."""

from __future__ import annotations

import json

import pytest

from services.registry.tests.support import enterprise, school
from tests.support.harness import auth, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="package")]
OFFICE = auth("office_admin", sub="office-net")


async def create(reg, body: dict) -> dict:
    r = await reg.http.post("/institutions", json=body, headers=OFFICE)
    assert r.status_code == 201, r.text
    return r.json()


async def test_a_host_registers_edits_and_closes_its_base(reg, broker):
    host = await create(reg, school("上海基地主办学院"))
    other = await create(reg, enterprise("上海无关企业有限公司"))
    host_admin = auth("institution_admin", institution=host["id"])
    body = {"name_zh": "临港智能制造公共实训基地", "base_type": "practice", "category": "public_training_base",
            "host_institution_ids": [host["id"]], "capacity": 300, "industries": ["intelligent_manufacturing"]}
    assert (await reg.http.post("/bases", json=body, headers=auth("institution_admin",
                                                                   institution=other["id"]))).status_code == 403
    assert (await reg.http.post("/bases", json={**body, "host_institution_ids": ["nope"]},
                                headers=OFFICE)).status_code == 422
    created = await reg.http.post("/bases", json=body, headers=host_admin)
    assert created.status_code == 201, created.text
    base = created.json()
    stale = await reg.http.patch(f"/bases/{base['id']}", json={"capacity": 10},
                                 headers={**host_admin, "If-Match": '"9"'})
    assert stale.status_code == 412
    edited = await reg.http.patch(f"/bases/{base['id']}", json={"capacity": 350},
                                  headers={**host_admin, "If-Match": created.headers["ETag"]})
    assert edited.status_code == 200 and edited.json()["capacity"] == 350
    listed = (await reg.http.get("/bases", params={"category": "public_training_base",
                                                   "host_institution_id": host["id"]})).json()
    assert [b["id"] for b in listed] == [base["id"]]
    assert (await reg.http.get("/bases", params={"industry": "biomedicine",
                                                 "host_institution_id": host["id"]})).json() == []
    closed = await reg.http.post(f"/bases/{base['id']}/close", headers=host_admin)
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    await reg.runtime.relay.publish_pending()
    records = await read_topic(broker.bootstrap, "registry.base.v1",
                               until=lambda rs: sum(r.key == base["id"].encode() for r in rs) >= 3)
    types = [json.loads(r.value)["type"].rsplit(".", 1)[1] for r in records if r.key == base["id"].encode()]
    assert types == ["created", "updated", "closed"]


async def test_an_alliance_forms_gains_and_loses_members_and_dissolves(reg, broker):
    lead = await create(reg, school("上海联盟牵头大学"))
    joiner = await create(reg, enterprise("上海联盟成员企业有限公司"))
    outsider = await create(reg, enterprise("上海联盟局外企业有限公司"))
    lead_admin = auth("institution_admin", institution=lead["id"])
    outsider_admin = auth("institution_admin", institution=outsider["id"])
    formed = await reg.http.post("/alliances", json={"name_zh": "临港集成电路产教融合共同体", "kind": "community",
                                                     "lead_institution_id": lead["id"]}, headers=lead_admin)
    assert formed.status_code == 201, formed.text
    alliance = formed.json()
    assert alliance["members"] == [{"institution_id": lead["id"], "role": "lead"}]
    assert (await reg.http.post("/alliances", json={"name_zh": "冒名联盟", "kind": "alliance",
                                                    "lead_institution_id": lead["id"]},
                                headers=outsider_admin)).status_code == 403
    url = f"/alliances/{alliance['id']}/members"
    assert (await reg.http.post(url, json={"institution_id": joiner["id"]}, headers=outsider_admin)).status_code == 403
    invited = await reg.http.post(url, json={"institution_id": joiner["id"], "role": "vice_lead"}, headers=lead_admin)
    assert invited.status_code == 202, "the lead invites; the institution accepts"
    joined = await reg.http.post(f"/alliances/{alliance['id']}/join-requests/{joiner['id']}/accept",
                                 headers=auth("institution_admin", institution=joiner["id"]))
    assert joined.status_code == 200, joined.text
    assert {"institution_id": joiner["id"], "role": "vice_lead"} in joined.json()["members"]
    assert (await reg.http.post(url, json={"institution_id": joiner["id"]}, headers=lead_admin)).status_code == 409
    mine = (await reg.http.get("/alliances", params={"member_institution_id": joiner["id"]})).json()
    assert [a["id"] for a in mine] == [alliance["id"]]
    assert (await reg.http.delete(f"{url}/{lead['id']}", headers=OFFICE)).status_code == 409
    left = await reg.http.delete(f"{url}/{joiner['id']}", headers=auth("institution_admin", institution=joiner["id"]))
    assert left.status_code == 200 and len(left.json()["members"]) == 1
    assert (await reg.http.post(f"/alliances/{alliance['id']}/dissolve", headers=outsider_admin)).status_code == 403
    assert (await reg.http.post(f"/alliances/{alliance['id']}/dissolve", headers=lead_admin)).status_code == 200
    await reg.runtime.relay.publish_pending()
    records = await read_topic(broker.bootstrap, "registry.alliance.v1",
                               until=lambda rs: sum(r.key == alliance["id"].encode() for r in rs) >= 5)
    events = [json.loads(r.value) for r in records if r.key == alliance["id"].encode()]
    assert [e["type"].rsplit(".", 1)[1] for e in events] == [
        "formed", "join_requested", "member_joined", "member_left", "dissolved"]
    assert events[1]["data"]["member_institution_id"] == joiner["id"]
    assert events[1]["data"]["initiated_by"] == "lead" and events[1]["data"]["requested_role"] == "vice_lead"
    assert events[2]["data"]["member_institution_id"] == joiner["id"]


async def test_a_mentor_is_listed_publicly_only_after_consent_and_personal_data_stays_hidden(reg, broker):
    inst = await create(reg, enterprise("上海导师所在企业有限公司"))
    admin = auth("institution_admin", institution=inst["id"])
    other_admin = auth("institution_admin", institution=(await create(reg, enterprise("上海别家企业有限公司")))["id"])
    body = {"institution_id": inst["id"], "title": "industry_professor", "name": "陈工程师", "phone": "13600000000",
            "email": "chen@example.cn", "id_number": "310101198001011234", "industries": ["integrated_circuits"]}
    assert (await reg.http.post("/mentors", json=body, headers=other_admin)).status_code == 403
    created = await reg.http.post("/mentors", json=body, headers=admin)
    assert created.status_code == 201, created.text
    mentor = created.json()
    assert mentor["status"] == "pending_consent" and mentor["id_number"] == "310*************34"
    assert (await reg.http.get(f"/mentors/{mentor['id']}")).status_code == 404, "unlisted people are not public"
    assert mentor["id"] not in [m["id"] for m in (await reg.http.get("/mentors")).json()]

    consent = await reg.http.post(f"/mentors/{mentor['id']}/consent", json={"given": True, "method": "signed_form"},
                                  headers=admin)
    assert consent.status_code == 200 and consent.json()["status"] == "listed"
    public = (await reg.http.get(f"/mentors/{mentor['id']}")).json()
    assert public["name"] == "陈工程师" and public["phone"] is None and public["email"] is None
    assert public["id_number"] is None
    seen_by_other = (await reg.http.get(f"/mentors/{mentor['id']}", headers=other_admin)).json()
    assert seen_by_other["phone"] is None
    assert (await reg.http.get(f"/mentors/{mentor['id']}", headers=admin)).json()["phone"] == "13600000000"
    professors = (await reg.http.get("/mentors", params={"title": "industry_professor",
                                                         "industry": "integrated_circuits"})).json()
    assert mentor["id"] in [m["id"] for m in professors]

    edited = await reg.http.patch(f"/mentors/{mentor['id']}", json={"title": "industry_mentor"},
                                  headers={**admin, "If-Match": '"2"'})
    assert edited.status_code == 200, edited.text
    withdrawn = await reg.http.post(f"/mentors/{mentor['id']}/consent", json={"given": False, "method": "email"},
                                    headers=admin)
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "unlisted"
    assert (await reg.http.get(f"/mentors/{mentor['id']}")).status_code == 404
    await reg.runtime.relay.publish_pending()
    records = await read_topic(broker.bootstrap, "registry.mentor.v1",
                               until=lambda rs: sum(r.key == mentor["id"].encode() for r in rs) >= 3)
    events = [json.loads(r.value) for r in records if r.key == mentor["id"].encode()]
    assert [e["type"].rsplit(".", 1)[1] for e in events] == ["listed", "updated", "unlisted"]
    assert events[0]["data"]["name"] == "陈工程师" and events[2]["data"]["name"] is None
    assert all("phone" not in e["data"] and "id_number" not in e["data"] for e in events)
