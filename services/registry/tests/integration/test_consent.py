"""Relationships need both sides: joining an alliance is a request the lead approves (or an invitation the
institution accepts), a co-host confirms before it hosts, and a registered USCC changes only through the office."""

from __future__ import annotations

import json

import pytest

from services.registry.tests.support import enterprise, new_uscc, school
from tests.support.harness import auth, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="package")]
OFFICE = auth("office_admin", sub="office-consent")


async def create(reg, body: dict) -> dict:
    r = await reg.http.post("/institutions", json=body, headers=OFFICE)
    assert r.status_code == 201, r.text
    return r.json()


async def test_an_institution_asks_to_join_and_the_lead_approves_setting_its_role(reg, broker):
    lead = await create(reg, school("上海同意联盟牵头大学"))
    asker = await create(reg, enterprise("上海同意联盟申请企业有限公司"))
    lead_admin = auth("institution_admin", institution=lead["id"])
    asker_admin = auth("institution_admin", institution=asker["id"])
    alliance = (await reg.http.post("/alliances", json={"name_zh": "同意测试联盟", "kind": "alliance",
                                                        "lead_institution_id": lead["id"]}, headers=lead_admin)).json()
    members = f"/alliances/{alliance['id']}/members"
    grab = await reg.http.post(members, json={"institution_id": asker["id"], "role": "vice_lead"}, headers=asker_admin)
    assert grab.status_code == 403 and "the lead sets other roles" in grab.json()["detail"]
    asked = await reg.http.post(members, json={"institution_id": asker["id"]}, headers=asker_admin)
    assert asked.status_code == 202, asked.text
    assert asker["id"] not in [m["institution_id"] for m in asked.json()["members"]], "not a member yet"
    assert asked.json()["join_requests"][0]["initiated_by"] == "institution"
    again = await reg.http.post(members, json={"institution_id": asker["id"]}, headers=asker_admin)
    assert again.status_code == 409

    accept = f"/alliances/{alliance['id']}/join-requests/{asker['id']}/accept"
    assert (await reg.http.post(accept, headers=asker_admin)).status_code == 403, "nobody approves their own request"
    approved = await reg.http.post(accept, json={"role": "secretariat"}, headers=lead_admin)
    assert approved.status_code == 200, approved.text
    assert {"institution_id": asker["id"], "role": "secretariat"} in approved.json()["members"]
    assert approved.json()["join_requests"] == []

    await reg.runtime.relay.publish_pending()
    records = await read_topic(broker.bootstrap, "registry.alliance.v1",
                               until=lambda rs: sum(r.key == alliance["id"].encode() for r in rs) >= 3)
    types = [json.loads(r.value)["type"].rsplit(".", 1)[1] for r in records if r.key == alliance["id"].encode()]
    assert types == ["formed", "join_requested", "member_joined"]


async def test_a_join_can_be_declined_and_members_named_by_a_lead_at_formation_are_only_invited(reg):
    lead = await create(reg, school("上海邀请联盟牵头大学"))
    named = await create(reg, enterprise("上海被邀请企业有限公司"))
    lead_admin = auth("institution_admin", institution=lead["id"])
    named_admin = auth("institution_admin", institution=named["id"])
    formed = await reg.http.post("/alliances", headers=lead_admin, json={
        "name_zh": "邀请测试联盟", "kind": "alliance", "lead_institution_id": lead["id"],
        "members": [{"institution_id": named["id"], "role": "vice_lead"}]})
    assert formed.status_code == 201
    alliance = formed.json()
    assert [m["institution_id"] for m in alliance["members"]] == [lead["id"]]
    assert alliance["join_requests"][0]["initiated_by"] == "lead"
    declined = await reg.http.post(f"/alliances/{alliance['id']}/join-requests/{named['id']}/decline",
                                   headers=named_admin)
    assert declined.status_code == 200 and declined.json()["join_requests"] == []
    gone = await reg.http.post(f"/alliances/{alliance['id']}/join-requests/{named['id']}/accept", headers=named_admin)
    assert gone.status_code == 404
    by_office = await reg.http.post(f"/alliances/{alliance['id']}/members", headers=OFFICE,
                                    json={"institution_id": named["id"], "role": "observer"})
    assert by_office.status_code == 201, "the office adds at once"


async def test_a_named_co_host_hosts_only_once_it_confirms(reg, broker):
    host = await create(reg, school("上海共建基地主办学院"))
    named = await create(reg, enterprise("上海被指名共建企业有限公司"))
    third = await create(reg, enterprise("上海第三方企业有限公司"))
    host_admin = auth("institution_admin", institution=host["id"])
    body = {"name_zh": "共建确认实训基地", "base_type": "practice", "category": "public_training_base",
            "host_institution_ids": [host["id"], named["id"]], "capacity": 10}
    created = await reg.http.post("/bases", json=body, headers=host_admin)
    assert created.status_code == 201, created.text
    base = created.json()
    assert base["host_institution_ids"] == [host["id"]] and base["pending_host_ids"] == [named["id"]]
    listed = (await reg.http.get("/bases", params={"host_institution_id": named["id"]})).json()
    assert base["id"] not in [b["id"] for b in listed], "not a host before confirming"
    confirm = f"/bases/{base['id']}/cohosts/{named['id']}/confirm"
    assert (await reg.http.post(confirm, headers=host_admin)).status_code == 403, "the host cannot confirm for it"
    assert (await reg.http.post(confirm, headers=auth("institution_admin",
                                                      institution=third["id"]))).status_code == 403
    confirmed = await reg.http.post(confirm, headers=auth("institution_admin", institution=named["id"]))
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["host_institution_ids"] == [host["id"], named["id"]]
    assert confirmed.json()["pending_host_ids"] == []

    edited = await reg.http.patch(f"/bases/{base['id']}", headers={**host_admin, "If-Match": '"2"'},
                                  json={"host_institution_ids": [host["id"], named["id"], third["id"]]})
    assert edited.status_code == 200, edited.text
    assert edited.json()["pending_host_ids"] == [third["id"]]
    withdrawn = await reg.http.post(f"/bases/{base['id']}/cohosts/{third['id']}/decline", headers=host_admin)
    assert withdrawn.status_code == 200 and withdrawn.json()["pending_host_ids"] == []
    office_base = await reg.http.post("/bases", json={**body, "name_zh": "办公室指定基地"}, headers=OFFICE)
    assert office_base.json()["host_institution_ids"] == [host["id"], named["id"]], "the office names hosts outright"

    await reg.runtime.relay.publish_pending()
    records = await read_topic(broker.bootstrap, "registry.base.v1",
                               until=lambda rs: sum(r.key == base["id"].encode() for r in rs) >= 6)
    events = [json.loads(r.value) for r in records if r.key == base["id"].encode()]
    assert [e["type"].rsplit(".", 1)[1] for e in events] == [
        "created", "cohost_requested", "updated", "updated", "cohost_requested", "cohost_declined"]
    assert events[1]["data"]["cohost_institution_id"] == named["id"]


async def test_an_institution_admin_asks_for_a_uscc_change_and_the_office_decides(reg, broker):
    inst = await create(reg, enterprise("上海换码企业有限公司"))
    admin = auth("institution_admin", institution=inst["id"])
    wanted = new_uscc()
    patched = await reg.http.patch(f"/institutions/{inst['id']}", json={"uscc": wanted},
                                   headers={**admin, "If-Match": '"1"'})
    assert patched.status_code == 403 and "uscc-change-requests" in patched.json()["detail"]
    other = auth("institution_admin", institution=(await create(reg, enterprise("上海别人企业有限公司")))["id"])
    url = f"/institutions/{inst['id']}/uscc-change-requests"
    assert (await reg.http.post(url, json={"uscc": wanted}, headers=other)).status_code == 404
    asked = await reg.http.post(url, json={"uscc": wanted, "reason": "三证合一后换发"}, headers=admin)
    assert asked.status_code == 201, asked.text
    req = asked.json()
    assert req["status"] == "pending" and req["current_uscc"] == inst["uscc"]
    assert (await reg.http.post(url, json={"uscc": new_uscc()}, headers=admin)).status_code == 409, "one at a time"
    work = (await reg.http.get("/institutions/uscc-change-requests", headers=OFFICE)).json()
    assert req["id"] in [w["id"] for w in work]
    assert (await reg.http.get("/institutions/uscc-change-requests", headers=admin)).status_code == 403
    assert (await reg.http.post(f"{url}/{req['id']}/approve", headers=admin)).status_code == 403
    approved = await reg.http.post(f"{url}/{req['id']}/approve", json={"note": "核验营业执照"}, headers=OFFICE)
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    now = (await reg.http.get(f"/institutions/{inst['id']}")).json()
    assert now["uscc"] == wanted and now["version"] == 2
    assert [r["status"] for r in (await reg.http.get(url, headers=admin)).json()] == ["approved"]
    assert (await reg.http.post(f"{url}/{req['id']}/decline", headers=OFFICE)).status_code == 409

    await reg.runtime.relay.publish_pending()
    records = await read_topic(broker.bootstrap, "registry.institution.v1",
                               until=lambda rs: sum(r.key == inst["id"].encode() for r in rs) >= 4)
    types = [json.loads(r.value)["type"].rsplit(".", 1)[1] for r in records if r.key == inst["id"].encode()]
    assert types == ["registered", "uscc_change_requested", "updated", "uscc_change_decided"]
