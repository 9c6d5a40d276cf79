"""Institutions through HTTP and Kafka: registration, versioning, history, as-of reads, search, access, merges."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from cloudevents.v1.conversion import from_json as ce_from_json
from cloudevents.v1.http import CloudEvent as SdkCloudEvent

from services.registry.tests.support import enterprise, new_uscc, school
from tests.support.harness import auth, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="package")]
OFFICE = auth("office_admin", sub="office-1")


async def create(reg, body: dict, headers=OFFICE) -> dict:
    r = await reg.http.post("/institutions", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def test_registration_validates_the_uscc_and_refuses_duplicates_naming_the_existing_record(reg):
    first = await create(reg, enterprise("上海临港测试重复企业有限公司"))
    dup = await reg.http.post("/institutions", json=enterprise("另一家公司", uscc=first["uscc"]), headers=OFFICE)
    assert dup.status_code == 409
    assert dup.headers["content-type"].startswith("application/problem+json")
    assert dup.json()["existing_id"] == first["id"] and "上海临港测试重复企业有限公司" in dup.json()["detail"]

    bad = await reg.http.post("/institutions", json=enterprise("校验位错误公司", uscc="91350100M000100Y4A"),
                              headers=OFFICE)
    assert bad.status_code == 422 and "check character" in bad.json()["detail"]
    member = await reg.http.post("/institutions", json=enterprise("无权公司"), headers=auth("member"))
    assert member.status_code == 403
    anonymous = await reg.http.post("/institutions", json=enterprise("匿名公司"))
    assert anonymous.status_code == 401


async def test_a_stale_if_match_gets_412_and_every_version_is_in_the_history(reg):
    inst = await create(reg, school("上海版本测试学院", contact_name="李老师", contact_phone="13900000001"))
    url = f"/institutions/{inst['id']}"
    before_edit = datetime.now(UTC)
    await asyncio.sleep(0.01)

    missing = await reg.http.patch(url, json={"address": "沪城环路1号"}, headers=OFFICE)
    assert missing.status_code == 428

    ok = await reg.http.patch(url, json={"name_zh": "上海版本测试大学", "address": "沪城环路1号"},
                              headers={**OFFICE, "If-Match": '"1"'})
    assert ok.status_code == 200, ok.text
    assert ok.headers["ETag"] == '"2"' and ok.json()["version"] == 2

    stale = await reg.http.patch(url, json={"address": "另一个地址"}, headers={**OFFICE, "If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.json()["current_etag"] == '"2"'

    history = (await reg.http.get(f"{url}/history", headers=OFFICE)).json()
    assert [h["version"] for h in history] == [1, 2]
    assert history[1]["changes"]["name_zh"] == ["上海版本测试学院", "上海版本测试大学"]
    assert history[1]["actor"].startswith("office-1")
    assert history[0]["changes"]["contact_phone"] == ["***", "***"], "history never shows personal values"

    then = await reg.http.get(url, params={"as_of": before_edit.isoformat()})
    assert then.status_code == 200 and then.json()["name_zh"] == "上海版本测试学院" and then.json()["version"] == 1
    now = await reg.http.get(url)
    assert now.json()["name_zh"] == "上海版本测试大学"
    too_early = await reg.http.get(url, params={"as_of": "2001-01-01T00:00:00Z"})
    assert too_early.status_code == 404


async def test_an_institution_admin_edits_only_their_own_institution_and_sees_only_their_own_contacts(reg):
    a = await create(reg, enterprise("上海甲方科技有限公司", contact_name="张三", contact_phone="13800000002",
                                      contact_email="zs@a.cn"))
    b = await create(reg, enterprise("上海乙方科技有限公司", contact_name="李四", contact_phone="13800000003"))
    admin_a = auth("institution_admin", institution=a["id"])

    forbidden = await reg.http.patch(f"/institutions/{b['id']}", json={"website": "https://evil.example"},
                                     headers={**admin_a, "If-Match": '"1"'})
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"].startswith("application/problem+json")
    own = await reg.http.patch(f"/institutions/{a['id']}", json={"website": "https://a.example.cn"},
                               headers={**admin_a, "If-Match": '"1"'})
    assert own.status_code == 200 and own.json()["website"] == "https://a.example.cn"
    assert (await reg.http.post(f"/institutions/{b['id']}/merge", json={"successor_id": a["id"]},
                                headers=admin_a)).status_code == 403

    public_b = (await reg.http.get(f"/institutions/{b['id']}")).json()
    assert public_b["contact_phone"] is None and public_b["contact_name"] is None
    b_as_seen_by_a = (await reg.http.get(f"/institutions/{b['id']}", headers=admin_a)).json()
    assert b_as_seen_by_a["contact_phone"] is None
    a_as_seen_by_a = (await reg.http.get(f"/institutions/{a['id']}", headers=admin_a)).json()
    assert a_as_seen_by_a["contact_email"] == "zs@a.cn"
    assert (await reg.http.get(f"/institutions/{b['id']}", headers=OFFICE)).json()["contact_phone"] == "13800000003"
    listing = (await reg.http.get("/institutions", params={"q": "乙方科技"})).json()["items"]
    assert listing and all(i["contact_phone"] is None for i in listing)
    assert (await reg.http.get(f"/institutions/{b['id']}/history", headers=admin_a)).status_code == 403


async def test_substring_search_filters_and_cursor_pages(reg):
    dianji = await create(reg, school("上海电机学院", district="lingang",
                                      industries=["intelligent_manufacturing", "high_end_equipment"]))
    for i in range(7):
        await create(reg, enterprise(f"上海分页测试企业{i:02d}有限公司", industries=["biomedicine"],
                                     district="xuhui"))

    found = (await reg.http.get("/institutions", params={"q": "电机"})).json()["items"]
    assert dianji["id"] in [i["id"] for i in found]
    assert all("电机" in i["name_zh"] for i in found)
    single = (await reg.http.get("/institutions", params={"q": "机"})).json()["items"]
    assert dianji["id"] in [i["id"] for i in single]
    assert (await reg.http.get("/institutions", params={"q": "电学机"})).json()["items"] == []
    by_filters = (await reg.http.get("/institutions", params={
        "kind": "university", "district": "lingang", "industry": "high_end_equipment"})).json()["items"]
    assert [i["id"] for i in by_filters] == [dianji["id"]]
    assert (await reg.http.get("/institutions", params={"q": "电机", "district": "xuhui"})).json()["items"] == []

    seen, cursor = [], None
    while True:
        params = {"q": "分页测试", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await reg.http.get("/institutions", params=params)).json()
        seen += [i["name_zh"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"上海分页测试企业{i:02d}有限公司" for i in range(7)]
    bad = await reg.http.get("/institutions", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422


async def test_merge_withdraws_the_duplicate_with_a_successor_link_and_says_so_on_the_topic(reg, broker):
    keep = await create(reg, enterprise("上海合并保留有限公司"))
    dup = await create(reg, enterprise("上海合并保留有限公司（重复）", contact_name="王五",
                                       contact_phone="13800000001"))
    merged = await reg.http.post(f"/institutions/{dup['id']}/merge",
                                 json={"successor_id": keep["id"], "reason": "duplicate entry"}, headers=OFFICE)
    assert merged.status_code == 200, merged.text
    assert merged.json()["status"] == "withdrawn" and merged.json()["successor_id"] == keep["id"]
    again = await reg.http.post(f"/institutions/{dup['id']}/merge", json={"successor_id": keep["id"]},
                                headers=OFFICE)
    assert again.status_code == 409
    into_withdrawn = await reg.http.post(f"/institutions/{keep['id']}/merge", json={"successor_id": dup["id"]},
                                         headers=OFFICE)
    assert into_withdrawn.status_code == 409
    edit = await reg.http.patch(f"/institutions/{dup['id']}", json={"website": "x"},
                                headers={**OFFICE, "If-Match": merged.headers["ETag"]})
    assert edit.status_code == 409

    await reg.runtime.relay.publish_pending()
    records = await read_topic(broker.bootstrap, "registry.institution.v1",
                               until=lambda rs: any(r.key == dup["id"].encode() and b"merged" in r.value for r in rs))
    [rec] = [r for r in records if r.key == dup["id"].encode() and b"merged" in r.value]
    event = ce_from_json(SdkCloudEvent, rec.value)
    assert event["type"] == "cn.gov.sh.cjrh.registry.institution.merged"
    assert event.data["successor_id"] == keep["id"] and event.data["status"] == "withdrawn"
    assert "contact_phone" not in event.data

    contacts = await read_topic(broker.bootstrap, "registry.contact.v1",
                                until=lambda rs: any(r.key == dup["id"].encode() for r in rs))
    [c] = [r for r in contacts if r.key == dup["id"].encode()]
    assert json.loads(c.value)["type"] == "cn.gov.sh.cjrh.registry.contact.updated"
    assert json.loads(c.value)["data"]["contact_name"] == "王五"


async def test_status_changes_are_the_offices_and_are_published(reg, broker):
    inst = await create(reg, enterprise("上海状态变更有限公司"))
    admin = auth("institution_admin", institution=inst["id"])
    assert (await reg.http.post(f"/institutions/{inst['id']}/status", json={"status": "inactive"},
                                headers=admin)).status_code == 403
    r = await reg.http.post(f"/institutions/{inst['id']}/status", json={"status": "inactive"}, headers=OFFICE)
    assert r.status_code == 200 and r.json()["status"] == "inactive"
    assert (await reg.http.post(f"/institutions/{inst['id']}/status", json={"status": "inactive"},
                                headers=OFFICE)).status_code == 409
    inactive = (await reg.http.get("/institutions", params={"status": "inactive", "q": "状态变更"})).json()["items"]
    assert [i["id"] for i in inactive] == [inst["id"]]
    await reg.runtime.relay.publish_pending()
    await read_topic(broker.bootstrap, "registry.institution.v1", until=lambda rs: any(
        r.key == inst["id"].encode() and b"status_changed" in r.value for r in rs))


async def test_contact_changes_go_to_the_internal_contact_topic_only(reg, broker):
    inst = await create(reg, enterprise("上海联系人变更有限公司"))
    r = await reg.http.patch(f"/institutions/{inst['id']}", json={"contact_phone": "13700000000"},
                             headers={**OFFICE, "If-Match": '"1"'})
    assert r.status_code == 200
    await reg.runtime.relay.publish_pending()
    contacts = await read_topic(broker.bootstrap, "registry.contact.v1",
                                until=lambda rs: any(r.key == inst["id"].encode() for r in rs))
    [c] = [x for x in contacts if x.key == inst["id"].encode()]
    assert json.loads(c.value)["data"]["contact_phone"] == "13700000000"
    public = await read_topic(broker.bootstrap, "registry.institution.v1",
                              until=lambda rs: any(r.key == inst["id"].encode() for r in rs))
    mine = [json.loads(x.value)["type"] for x in public if x.key == inst["id"].encode()]
    assert mine == ["cn.gov.sh.cjrh.registry.institution.registered"], "a contact-only change is not public news"
    assert new_uscc() != new_uscc()


async def test_integrations_submit_records_but_cannot_edit_other_institutions(reg):
    feed = auth("integration", sub="city-feed")
    made = await create(reg, enterprise("上海集成接口提交有限公司"), headers=feed)
    other = await create(reg, enterprise("上海集成接口他家有限公司"))
    r = await reg.http.patch(f"/institutions/{other['id']}", json={"website": "https://x.cn"},
                             headers={**feed, "If-Match": '"1"'})
    assert r.status_code == 403
    wrong_kind = await reg.http.patch(f"/institutions/{made['id']}", json={"school_code": "4131010999"},
                                      headers={**OFFICE, "If-Match": '"1"'})
    assert wrong_kind.status_code == 422 and "no school_code" in wrong_kind.json()["detail"]
    history = (await reg.http.get(f"/institutions/{made['id']}/history", headers=OFFICE)).json()
    assert history[0]["actor"].startswith("city-feed")
