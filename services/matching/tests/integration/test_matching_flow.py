"""Matching end to end: projections fed through the real broker, opportunities, recommendations, matches, reports,
municipal inbound demand (with its dead-letter topic) and placement rounds."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

import matching.main
from common.events import CloudEvent
from matching.config import Settings
from tests.support.harness import auth, fresh_database, produce, read_topic, run_service, wait_until

pytestmark = pytest.mark.integration

PREFIX = "cn.gov.sh.cjrh."


def registry_event(name: str, data: dict, topic_key: str) -> bytes:
    """A registry-shaped CloudEvent, built by hand (services never import each other)."""
    return CloudEvent(id=str(uuid.uuid4()), source="//platform.cjrh.sh.cn/registry", type=PREFIX + name,
                      subject=topic_key, time=datetime.now(UTC), data=data).to_bytes()


def institution(name_zh: str, district: str, industries: list[str], keywords: list[str], *, kind="enterprise",
                version=1, status="active", successor_id=None, iid=None, uscc=None) -> dict:
    return {"id": iid or str(uuid.uuid4()), "kind": kind, "name_zh": name_zh, "name_en": None, "uscc": uscc,
            "district": district, "industries": industries, "keywords": keywords, "status": status,
            "successor_id": successor_id, "version": version, "updated_at": datetime.now(UTC).isoformat()}


async def publish_institutions(bootstrap: str, *insts: dict, name="registry.institution.registered") -> None:
    for inst in insts:
        await produce(bootstrap, "registry.institution.v1", [registry_event(name, inst, inst["id"])],
                      key=inst["id"].encode())


async def wait_known(svc, inst_id: str, **expect) -> dict:
    async def check():
        r = await svc.http.get(f"/institutions/{inst_id}")
        if r.status_code != 200:
            return None
        body = r.json()
        return body if all(body.get(k) == v for k, v in expect.items()) else None
    return await wait_until(check, what=f"institution {inst_id} in matching with {expect}")


async def test_opportunity_lifecycle_recommendations_and_match_tracking(broker):
    chip = institution("临港芯片制造有限公司", "lingang", ["integrated_circuits"], ["芯片", "晶圆制造", "集成电路"])
    school = institution("上海电子信息职业技术学院", "fengxian", ["integrated_circuits", "electronics"],
                         ["集成电路", "微电子技术", "芯片封装测试"], kind="vocational_higher")
    far = institution("崇明生态农业合作社", "chongming", ["agriculture"], ["生态农业", "水稻种植"])
    near_certified = institution("浦东智能装备有限公司", "pudong", ["intelligent_manufacturing"],
                                 ["工业机器人", "集成电路装备"])
    async with run_service(matching.main.create_app, Settings, broker=broker,
                           db_url=await fresh_database("matching"), pending_match_cap=2) as svc:
        await publish_institutions(broker.bootstrap, chip, school, far, near_certified)
        cert = {"id": str(uuid.uuid4()), "institution_id": near_certified["id"], "enterprise_name": "浦东智能装备",
                "batch_id": "b1", "batch_name": "2026 第一批", "year": 2026, "status": "certified",
                "is_certified": True, "evaluation_result": None, "version": 3,
                "updated_at": datetime.now(UTC).isoformat()}
        await produce(broker.bootstrap, "registry.certification.v1",
                      [registry_event("registry.certification.certified", cert, cert["id"])], key=cert["id"].encode())
        for inst in (chip, school, far):
            await wait_known(svc, inst["id"])
        await wait_known(svc, near_certified["id"], certified=True)

        chip_admin = auth("institution_admin", institution=chip["id"])
        school_admin = auth("institution_admin", institution=school["id"])
        body = {"kind": "order_class", "institution_id": chip["id"], "title_zh": "集成电路制造订单班",
                "description_zh": "联合培养晶圆制造和芯片封装测试方向的技术员", "skills": ["微电子技术", "芯片封装"],
                "industries": ["integrated_circuits"], "district": "lingang", "capacity": 1,
                "deadline": (datetime.now(UTC) + timedelta(days=60)).isoformat(),
                "contact_name": "李老师", "contact_phone": "13900000000"}
        # writes need the right institution
        r = await svc.http.post("/opportunities", json=body, headers=school_admin)
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
        r = await svc.http.post("/opportunities", json=body, headers=chip_admin)
        assert r.status_code == 201, r.text
        opp = r.json()
        assert opp["status"] == "draft" and opp["contact_phone"] == "13900000000"
        public = (await svc.http.get(f"/opportunities/{opp['id']}")).json()
        assert public["contact_phone"] is None and public["contact_name"] is None, "personal data hidden"

        # invalid transition names what is allowed
        r = await svc.http.post(f"/opportunities/{opp['id']}/close", headers=chip_admin)
        assert r.status_code == 200 and r.json()["status"] == "closed"
        r = await svc.http.post(f"/opportunities/{opp['id']}/open", headers=chip_admin)
        assert r.status_code == 409 and r.json()["allowed"] == []
        opp = (await svc.http.post("/opportunities", json=body | {"open": True}, headers=chip_admin)).json()
        assert opp["status"] == "open"

        rec = await svc.http.get(f"/opportunities/{opp['id']}/recommendations?limit=10")
        assert rec.status_code == 200, rec.text
        items = rec.json()["items"]
        ids = [i["candidate_id"] for i in items]
        assert chip["id"] not in ids, "an institution is not recommended to itself"
        assert ids[0] == school["id"]
        top = items[0]
        assert set(top["components"]) == {"industry", "text", "district", "certification", "capacity", "outcomes"}
        assert top["components"]["district"] == 0.5, "fengxian borders lingang"
        assert top["components"]["text"] > 0 and "集成电路" in top["shared_terms"]
        assert abs(sum(top["contributions"].values()) - top["score"]) < 1e-5
        assert any("neighbouring district" in reason for reason in top["reasons"])
        by_id = {i["candidate_id"]: i for i in items}
        assert by_id[near_certified["id"]]["components"]["certification"] == 1.0
        assert by_id[far["id"]]["components"]["district"] == 0.0
        assert by_id[far["id"]]["score"] < by_id[near_certified["id"]]["score"]

        # match lifecycle: school proposes, chip accepts, opportunity becomes matched
        r = await svc.http.post("/matches", json={"opportunity_id": opp["id"], "message": "我们有微电子专业"},
                                headers=school_admin)
        assert r.status_code == 201, r.text
        m = r.json()
        assert m["status"] == "proposed" and m["to_institution_id"] == chip["id"] and m["expires_at"]
        again = await svc.http.post("/matches", json={"opportunity_id": opp["id"]}, headers=school_admin)
        assert again.status_code == 409
        r = await svc.http.post(f"/matches/{m['id']}/accept", headers=school_admin)
        assert r.status_code == 409 and "recipient" in r.json()["detail"]
        r = await svc.http.post(f"/matches/{m['id']}/accept", headers=chip_admin)
        assert r.status_code == 200 and r.json()["status"] == "accepted"
        assert (await svc.http.get(f"/opportunities/{opp['id']}")).json()["status"] == "matched"
        for action in ("agree", "start"):
            r = await svc.http.post(f"/matches/{m['id']}/{action}", headers=school_admin)
            assert r.status_code == 200, r.text
        r = await svc.http.post(f"/matches/{m['id']}/complete", headers=chip_admin)
        assert r.status_code == 422, "outcomes are required"
        r = await svc.http.post(f"/matches/{m['id']}/complete", headers=chip_admin,
                                json={"outcomes": {"students_trained": 40, "hires": 12, "projects_delivered": 1}})
        assert r.status_code == 200 and r.json()["status"] == "completed"
        r = await svc.http.post(f"/matches/{m['id']}/cancel", headers=chip_admin)
        assert r.status_code == 409 and r.json()["allowed"] == []

        # outcomes and the yearly report
        rows = (await svc.http.get("/outcomes?by=institution")).json()
        school_row = next(x for x in rows if x["key"] == school["id"])
        assert school_row["completed"] == 1 and school_row["hires"] == 12
        ind = (await svc.http.get("/outcomes?by=industry")).json()
        assert ind[0]["key"] == "integrated_circuits" and ind[0]["students_trained"] == 40
        year = datetime.now(UTC).year
        report = (await svc.http.get(f"/reports/supply-demand?year={year}")).json()
        cell = next(x for x in report["rows"] if x["industry"] == "integrated_circuits" and x["district"] == "lingang")
        assert cell["demand_headcount"] == 1 and cell["matches_agreed"] == 1 and cell["hires"] == 12
        r = await svc.http.get(f"/reports/supply-demand?year={year}&format=csv")
        assert r.headers["content-type"].startswith("text/csv")
        parsed = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
        assert any(x["industry"] == "integrated_circuits" and x["gap"] == "1" for x in parsed)

        # pending cap and expiry (an offer from the far institution, proposals expire via the sweep)
        far_admin = auth("institution_admin", institution=far["id"])
        other = (await svc.http.post("/opportunities", headers=far_admin, json={
            "kind": "technical_service", "institution_id": far["id"], "title_zh": "稻田物联网监测", "open": True,
            "capacity": 5})).json()
        for proposer in (chip, school):
            r = await svc.http.post("/matches", json={"opportunity_id": other["id"]},
                                    headers=auth("institution_admin", institution=proposer["id"]))
            assert r.status_code == 201, r.text
        third = (await svc.http.post("/opportunities", headers=far_admin, json={
            "kind": "training", "institution_id": far["id"], "title_zh": "农机培训", "open": True})).json()
        await svc.http.post("/matches", json={"opportunity_id": third["id"]}, headers=chip_admin)
        r = await svc.http.post("/matches", json={"opportunity_id": other["id"], "to_institution_id": far["id"],
                                                  "from_institution_id": chip["id"]}, headers=chip_admin)
        assert r.status_code in (409, 422)
        capped = await svc.http.post("/matches", json={"opportunity_id": third["id"],
                                                       "from_institution_id": school["id"]}, headers=school_admin)
        assert capped.status_code == 201
        blocked = await svc.http.post("/matches", json={"opportunity_id": opp["id"]}, headers=school_admin)
        assert blocked.status_code in (409, 422)

        records = await read_topic(broker.bootstrap, "matching.match.v1",
                                   until=lambda rs: sum(r.key == m["id"].encode() for r in rs) >= 5)
        types = [orjson.loads(r.value)["type"].removeprefix(PREFIX) for r in records if r.key == m["id"].encode()]
        assert types == ["matching.match.proposed", "matching.match.accepted", "matching.match.agreed",
                         "matching.match.started", "matching.match.completed"]
        opp_types = [orjson.loads(r.value)["type"].removeprefix(PREFIX) for r in await read_topic(
            broker.bootstrap, "matching.opportunity.v1", until=lambda rs: any(
                r.key == opp["id"].encode() and b"matched" in r.value for r in rs)) if r.key == opp["id"].encode()]
        assert opp_types == ["matching.opportunity.opened", "matching.opportunity.matched"]


async def test_expired_proposals_and_merges_follow_the_successor(broker):
    old = institution("旧名称职业学校", "minhang", ["tourism"], ["酒店管理"], kind="vocational_secondary")
    new = institution("新合并职业学校", "minhang", ["tourism"], ["酒店管理", "旅游服务"], kind="vocational_secondary")
    partner = institution("上海酒店集团", "huangpu", ["tourism"], ["酒店"])
    async with run_service(matching.main.create_app, Settings, broker=broker,
                           db_url=await fresh_database("matching"), match_ttl_days=0.00001) as svc:
        await publish_institutions(broker.bootstrap, old, new, partner)
        for inst in (old, new, partner):
            await wait_known(svc, inst["id"])
        old_admin = auth("institution_admin", institution=old["id"])
        opp = (await svc.http.post("/opportunities", headers=old_admin, json={
            "kind": "internship", "institution_id": old["id"], "title_zh": "酒店实习", "open": True})).json()
        r = await svc.http.post("/matches", json={"opportunity_id": opp["id"]},
                                headers=auth("institution_admin", institution=partner["id"]))
        assert r.status_code == 201
        mid = r.json()["id"]
        async def swept():
            r = await svc.http.post("/maintenance/expire", headers=auth("office_admin"))
            return r.json()["matches"] == 1
        await wait_until(swept, what="the unanswered proposal expires (ttl under a second)")
        assert (await svc.http.get(f"/matches/{mid}", headers=old_admin)).json()["status"] == "expired"
        r = await svc.http.post(f"/matches/{mid}/accept", headers=old_admin)
        assert r.status_code == 409 and r.json()["allowed"] == []

        # answering a proposal whose time ran out before any sweep: 409, and the expiry itself stands (announced once)
        late = await svc.http.post("/matches", json={"opportunity_id": opp["id"]},
                                   headers=auth("institution_admin", institution=partner["id"]))
        assert late.status_code == 201
        late_id = late.json()["id"]
        await asyncio.sleep(1.0)  # past its ttl of under a second; no sweep runs in between
        r = await svc.http.post(f"/matches/{late_id}/accept", headers=old_admin)
        assert r.status_code == 409 and r.json()["current_status"] == "expired", r.text
        assert (await svc.http.get(f"/matches/{late_id}", headers=old_admin)).json()["status"] == "expired"
        again = await svc.http.post(f"/matches/{late_id}/accept", headers=old_admin)
        assert again.status_code == 409
        records = await read_topic(broker.bootstrap, "matching.match.v1", until=lambda rs: any(
            r.key == late_id.encode() and b"expired" in r.value for r in rs))
        types = [orjson.loads(r.value)["type"].removeprefix(PREFIX) for r in records if r.key == late_id.encode()]
        assert types == ["matching.match.proposed", "matching.match.expired"]

        merged = old | {"status": "withdrawn", "successor_id": new["id"], "version": 2}
        await publish_institutions(broker.bootstrap, merged, name="registry.institution.merged")
        followed = await wait_known(svc, old["id"], followed_from=old["id"])
        assert followed["id"] == new["id"]

        async def moved():
            body = (await svc.http.get(f"/opportunities/{opp['id']}")).json()
            return body if body["institution_id"] == new["id"] else None
        await wait_until(moved, what="the opportunity follows the successor")
        # an older event never overwrites a newer projection
        sentinel = institution("哨兵", "minhang", [], [])
        await produce(broker.bootstrap, "registry.institution.v1", [
            registry_event("registry.institution.updated", old | {"name_zh": "过期名称", "version": 1}, old["id"]),
            registry_event("registry.institution.registered", sentinel, sentinel["id"]),
        ], key=old["id"].encode())  # same key, same partition: the sentinel is applied after the stale update
        await wait_known(svc, sentinel["id"])
        raw = (await svc.http.get("/institutions")).json()["items"]
        assert next(x for x in raw if x["id"] == old["id"])["name_zh"] == old["name_zh"]


async def test_municipal_talent_demand_becomes_opportunities_and_bad_records_are_dead_lettered(broker):
    employer = institution("上海临港经济发展（集团）有限公司", "lingang", ["integrated_circuits"], [],
                           uscc="91310000132214209T")
    async with run_service(matching.main.create_app, Settings, broker=broker,
                           db_url=await fresh_database("matching")) as svc:
        await publish_institutions(broker.bootstrap, employer)
        await wait_known(svc, employer["id"])
        ext = f"hr-{uuid.uuid4().hex[:8]}"
        good = {"external_id": ext, "employer_uscc": "91310000132214209T", "employer_name": "临港集团",
                "title": "设备维护技术员", "skills": ["PLC编程", "电气维修"], "industry": "integrated_circuits",
                "district": "lingang", "headcount": 8, "deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat()}
        bad_uscc = good | {"external_id": "bad-1", "employer_uscc": "91310000132214209X"}
        missing = {k: v for k, v in good.items() if k != "headcount"} | {"external_id": "bad-2"}

        def ev(data, type_="municipal.talent_demand.posted"):
            return CloudEvent(id=str(uuid.uuid4()), source="//rsj.sh.gov.cn/talent-demand", type=PREFIX + type_,
                              time=datetime.now(UTC), data=data).to_bytes()

        await produce(broker.bootstrap, "municipal.talent-demand.v1",
                      [ev(good), ev(bad_uscc), ev(missing), ev(good, "municipal.talent_demand.deleted"),
                       b"not json"], key=b"city")

        async def imported():
            page = (await svc.http.get("/opportunities?kind=talent_demand")).json()
            return [o for o in page["items"] if o["external_id"] == ext]
        [opp] = await wait_until(imported, what="the municipal position as an opportunity")
        assert opp["status"] == "open" and opp["capacity"] == 8 and opp["institution_id"] == employer["id"]
        assert opp["source"] == "municipal"
        dlq = await read_topic(broker.bootstrap, "municipal.talent-demand.v1.dlq", until=lambda rs: len(rs) >= 4)
        reasons = [dict(r.headers)["dlq.reason"].decode() for r in dlq]
        assert any("GB 32100" in x for x in reasons)
        assert any("headcount" in x for x in reasons)
        assert any("unknown event type" in x for x in reasons)
        # a re-post updates the same opportunity rather than creating another
        await produce(broker.bootstrap, "municipal.talent-demand.v1", [ev(good | {"headcount": 10})], key=b"city")

        async def updated():
            found = await imported()
            return found if found and found[0]["capacity"] == 10 else None
        assert len(await wait_until(updated, what="the re-posted headcount")) == 1


async def test_placement_round_places_stably_and_explains_to_the_unplaced(broker):
    office = auth("office_admin")
    async with run_service(matching.main.create_app, Settings, broker=broker,
                           db_url=await fresh_database("matching")) as svc:
        body = {
            "name": "2026 临港暑期实习", "kind": "internship", "seed": 20260701,
            "positions": [
                {"id": "fab", "title": "晶圆厂实习", "host_institution_id": "h1", "capacity": 1,
                 "ranking": ["s2", "s1", "s3"]},
                {"id": "lab", "title": "联合实验室", "host_institution_id": "h2", "capacity": 2,
                 "reserved": {"secondary_vocational": 1}},
            ],
            "participants": [
                {"id": "s1", "preferences": ["fab", "lab"]},
                {"id": "s2", "preferences": ["fab"]},
                {"id": "s3", "preferences": ["fab", "lab"], "category": "secondary_vocational"},
                {"id": "s4", "preferences": ["lab"]},
                {"id": "s5", "preferences": ["lab"]},
            ],
        }
        r = await svc.http.post("/placement-rounds", json=body, headers=auth("institution_admin", institution="x"))
        assert r.status_code == 403
        bad = await svc.http.post("/placement-rounds", headers=office, json=body | {
            "participants": body["participants"] + [{"id": "s6", "preferences": ["nowhere"]}]})
        assert bad.status_code == 422 and "unknown position" in bad.json()["detail"]
        rnd = (await svc.http.post("/placement-rounds", json=body, headers=office)).json()
        assert rnd["seed"] == 20260701 and rnd["status"] == "draft"
        run = await svc.http.post(f"/placement-rounds/{rnd['id']}/run", headers=office)
        assert run.status_code == 200, run.text
        result = run.json()["result"]
        assert result["assignments"]["s2"] == "fab"
        assert result["assignments"]["s3"] == "lab", "the reserved seat goes to the secondary-vocational student"
        assert (await svc.http.post(f"/placement-rounds/{rnd['id']}/run", headers=office)).status_code == 409
        public = (await svc.http.get(f"/placement-rounds/{rnd['id']}")).json()
        assert public["result"] is None and public["placed"] == 3 and public["seed"] == 20260701
        unplaced = next(p for p in ("s1", "s4", "s5") if p not in result["assignments"])
        mine = await svc.http.get(f"/placement-rounds/{rnd['id']}/participants/{unplaced}",
                                  headers=auth("member", sub=unplaced))
        assert mine.status_code == 200 and mine.json()["status"] == "unplaced"
        assert all(x["reason"] in ("full_of_higher_ranked", "seats_reserved") for x in mine.json()["reasons"])
        assert all(x["detail_zh"] and x["detail"] for x in mine.json()["reasons"]), "worded in both languages"
        other = await svc.http.get(f"/placement-rounds/{rnd['id']}/participants/s2", headers=auth("member", sub="s9"))
        assert other.status_code == 403
        records = await read_topic(broker.bootstrap, "matching.placement.v1",
                                   until=lambda rs: sum(r.key.startswith(rnd["id"].encode()) for r in rs) >= 6)
        mine_records = [orjson.loads(r.value) for r in records if r.key.startswith(rnd["id"].encode())]
        kinds = sorted(x["type"].removeprefix(PREFIX) for x in mine_records)
        assert kinds.count("matching.placement.assigned") == 3 and kinds.count("matching.placement.unplaced") == 2
        assert kinds.count("matching.placement.round_published") == 1
        unplaced_event = next(x["data"] for x in mine_records if x["type"].endswith(".unplaced"))
        assert unplaced_event["reasons"] and all(r["code"] and r["detail_zh"] and r["detail_en"]
                                                 for r in unplaced_event["reasons"])


async def test_the_projection_upsert_ignores_older_versions_and_keeps_a_certification_seen_first(broker):
    """The one-statement upsert: a newer version wins whatever the arrival order; a prior certification counts."""
    inst = institution("嘉定汽车零部件有限公司", "jiading", ["automotive"], ["汽车零部件"])
    certified_first = institution("宝山钢铁材料有限公司", "baoshan", ["new_materials"], ["钢铁"])
    async with run_service(matching.main.create_app, Settings, broker=broker,
                           db_url=await fresh_database("matching")) as svc:
        cert = {"id": str(uuid.uuid4()), "institution_id": certified_first["id"], "status": "certified",
                "is_certified": True, "year": 2026, "version": 1}
        await produce(broker.bootstrap, "registry.certification.v1",
                      [registry_event("registry.certification.certified", cert, cert["id"])], key=cert["id"].encode())
        await publish_institutions(broker.bootstrap, inst)
        await wait_known(svc, inst["id"], name_zh=inst["name_zh"])
        await produce(broker.bootstrap, "registry.institution.v1", [
            registry_event("registry.institution.updated", inst | {"name_zh": "嘉定汽车科技", "version": 3},
                           inst["id"]),
            registry_event("registry.institution.updated", inst | {"name_zh": "过期名称", "version": 2}, inst["id"]),
        ], key=inst["id"].encode())  # same partition, in this order: the older version arrives last and is ignored
        await wait_known(svc, inst["id"], name_zh="嘉定汽车科技", version=3)
        await publish_institutions(broker.bootstrap, certified_first)
        await wait_known(svc, certified_first["id"], certified=True)
        raw = (await svc.http.get("/institutions")).json()["items"]
        assert next(x for x in raw if x["id"] == inst["id"])["name_zh"] == "嘉定汽车科技"


async def test_institutions_are_listed_in_cursor_pages_by_name(broker):
    tag = uuid.uuid4().hex[:6]
    insts = [institution(f"分页{tag}企业{i}", "songjiang", [], [], iid=f"{tag}-{i}") for i in range(5)]
    async with run_service(matching.main.create_app, Settings, broker=broker,
                           db_url=await fresh_database("matching")) as svc:
        await publish_institutions(broker.bootstrap, *insts)
        for inst in insts:
            await wait_known(svc, inst["id"])
        seen, cursor = [], None
        while True:
            params = {"district": "songjiang", "limit": 2, **({"cursor": cursor} if cursor else {})}
            body = (await svc.http.get("/institutions", params=params)).json()
            assert len(body["items"]) <= 2
            seen += [x["name_zh"] for x in body["items"]]
            cursor = body["next_cursor"]
            if not cursor:
                break
        assert seen == sorted(seen) and [n for n in seen if tag in n] == [f"分页{tag}企业{i}" for i in range(5)]
        bad = await svc.http.get("/institutions", params={"cursor": "x"})
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
