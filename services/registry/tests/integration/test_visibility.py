"""One rule per resource, shared by its list and its detail: what a caller cannot open is not listed either, and an
outsider's read or action on it is 404 (its existence is not confirmed)."""

from __future__ import annotations

import pytest

from registry.domain import OFFICE_ACTOR
from services.registry.tests.support import enterprise
from tests.support.harness import auth

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="package")]
OFFICE = auth("office_admin", sub="office-staff-7")


async def _institution(reg, name: str) -> dict:
    r = await reg.http.post("/institutions", json=enterprise(name), headers=OFFICE)
    assert r.status_code == 201, r.text
    return r.json()


async def test_unconsented_mentors_are_listed_and_opened_only_by_the_office_and_their_institutions_admins(reg):
    x = await _institution(reg, "上海导师可见性甲有限公司")
    admin = auth("institution_admin", institution=x["id"])
    body = {"institution_id": x["id"], "title": "industry_mentor", "name": "未同意的人", "industries": []}
    pending = (await reg.http.post("/mentors", json=body, headers=admin)).json()
    listed = (await reg.http.post("/mentors", json={**body, "name": "已同意的人"}, headers=admin)).json()
    await reg.http.post(f"/mentors/{listed['id']}/consent", json={"given": True, "method": "form"}, headers=admin)
    viewers = {
        "anonymous": {}, "member of X": auth("member", institution=x["id"]),
        "judge of X": auth("judge", institution=x["id"]),
        "admin of another": auth("institution_admin", institution="elsewhere"),
        "admin of X": admin, "office": OFFICE,
    }
    for who, headers in viewers.items():
        listing = await reg.http.get("/mentors", params={"institution_id": x["id"]}, headers=headers)
        ids = {m["id"] for m in listing.json()}
        detail = await reg.http.get(f"/mentors/{pending['id']}", headers=headers)
        sees = who in ("admin of X", "office")
        assert (pending["id"] in ids) is sees, who
        assert listed["id"] in ids, who
        assert detail.status_code == (200 if sees else 404), who
    other = auth("institution_admin", institution="elsewhere")
    r = await reg.http.post(f"/mentors/{pending['id']}/consent", json={"given": True, "method": "x"}, headers=other)
    assert r.status_code == 404, "an action on an unconsented person by an outsider confirms nothing"
    r = await reg.http.patch(f"/mentors/{pending['id']}", json={"title": "industry_professor"},
                             headers={**other, "If-Match": '"1"'})
    assert r.status_code == 404


async def test_certification_files_follow_one_rule_and_never_name_office_staff_to_enterprises(reg):
    x = await _institution(reg, "上海认证可见性甲有限公司")
    admin = auth("institution_admin", institution=x["id"], sub="enterprise-admin-1")
    cert = (await reg.http.post("/certifications", json={"institution_id": x["id"]}, headers=OFFICE)).json()
    batch = (await reg.http.post("/certification-batches", json={"name": "可见性批次", "year": 2029},
                                 headers=OFFICE)).json()
    r = await reg.http.post(f"/certifications/{cert['id']}/steps", headers=admin,
                            json={"action": "apply", "batch_id": batch["id"]})
    assert r.status_code == 200, r.text
    r = await reg.http.post(f"/certifications/{cert['id']}/steps", headers=OFFICE,
                            json={"action": "reject", "note": "材料不全"})
    assert r.status_code == 200, r.text

    for who in ("member", "judge"):
        headers = auth(who, institution=x["id"])
        assert (await reg.http.get("/certifications", headers=headers)).status_code == 403, who
        assert (await reg.http.get(f"/certifications/{cert['id']}", headers=headers)).status_code == 404, who
    outsider = auth("institution_admin", institution="elsewhere")
    assert (await reg.http.get(f"/certifications/{cert['id']}", headers=outsider)).status_code == 404
    assert cert["id"] not in [c["id"] for c in (await reg.http.get("/certifications", headers=outsider)).json()]
    assert (await reg.http.get("/certifications", params={"institution_id": x["id"]}, headers=outsider)).json() == []

    listed = (await reg.http.get("/certifications", headers=admin)).json()
    [mine] = [c for c in listed if c["id"] == cert["id"]]
    opened = (await reg.http.get(f"/certifications/{cert['id']}", headers=admin)).json()
    assert mine["history"] == opened["history"]
    actors = [e["actor"] for e in opened["history"]]
    assert not any("office-staff-7" in a for a in actors), actors
    assert actors == [OFFICE_ACTOR, "enterprise-admin-1 (institution_admin)", OFFICE_ACTOR]
    assert opened["history"][-1]["note"] == "材料不全", "the office's reasons still reach the enterprise"
    office_view = (await reg.http.get(f"/certifications/{cert['id']}", headers=OFFICE)).json()
    assert office_view["history"][0]["actor"].startswith("office-staff-7")


async def test_an_institutions_history_names_office_staff_only_to_the_office(reg):
    x = await _institution(reg, "上海历史可见性有限公司")
    admin = auth("institution_admin", institution=x["id"], sub="x-admin")
    r = await reg.http.patch(f"/institutions/{x['id']}", json={"address": "临港大道1号"},
                             headers={**admin, "If-Match": '"1"'})
    assert r.status_code == 200, r.text
    seen = [h["actor"] for h in (await reg.http.get(f"/institutions/{x['id']}/history", headers=admin)).json()]
    assert seen == [OFFICE_ACTOR, "x-admin (institution_admin)"]
    office = [h["actor"] for h in (await reg.http.get(f"/institutions/{x['id']}/history", headers=OFFICE)).json()]
    assert office[0].startswith("office-staff-7")
