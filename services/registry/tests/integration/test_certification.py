"""Certified industry-education integration enterprises through HTTP and Kafka."""

from __future__ import annotations

import json
import uuid

import pytest

from registry.domain import CERT_TRANSITIONS, CertAction, CertStatus
from services.registry.tests.support import enterprise, school
from tests.support.harness import auth, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="package")]
OFFICE = auth("office_admin", sub="office-cert")

PATHS: dict[CertStatus, list[CertAction]] = {
    CertStatus.POOLED: [],
    CertStatus.APPLIED: [CertAction.APPLY],
    CertStatus.REVIEWED: [CertAction.APPLY, CertAction.APPROVE],
    CertStatus.REJECTED: [CertAction.APPLY, CertAction.REJECT],
    CertStatus.CERTIFIED: [CertAction.APPLY, CertAction.APPROVE, CertAction.CERTIFY],
    CertStatus.ANNOUNCED: [CertAction.APPLY, CertAction.APPROVE, CertAction.CERTIFY, CertAction.ANNOUNCE],
    CertStatus.OBJECTED: [CertAction.APPLY, CertAction.APPROVE, CertAction.CERTIFY, CertAction.ANNOUNCE,
                          CertAction.OBJECT],
    CertStatus.RECTIFYING: [CertAction.APPLY, CertAction.APPROVE, CertAction.CERTIFY, CertAction.ANNOUNCE,
                            CertAction.EVALUATE_RECTIFY],
    CertStatus.WITHDRAWN: [CertAction.WITHDRAW],
    CertStatus.REVOKED: [CertAction.APPLY, CertAction.APPROVE, CertAction.CERTIFY, CertAction.REVOKE],
}


async def new_batch(reg, year: int = 2026) -> dict:
    r = await reg.http.post("/certification-batches", json={
        "name": f"{year} 第{uuid.uuid4().hex[:6]}批", "year": year, "objection_window_days": 7}, headers=OFFICE)
    assert r.status_code == 201, r.text
    return r.json()


async def pooled_enterprise(reg, name: str) -> tuple[dict, dict]:
    inst = (await reg.http.post("/institutions", json=enterprise(name), headers=OFFICE)).json()
    r = await reg.http.post("/certifications", json={"institution_id": inst["id"]}, headers=OFFICE)
    assert r.status_code == 201, r.text
    return inst, r.json()


async def step(reg, cert_id: str, action: str, headers=OFFICE, **extra):
    return await reg.http.post(f"/certifications/{cert_id}/steps", json={"action": action, **extra}, headers=headers)


async def test_an_enterprise_goes_from_the_pool_to_the_public_list_and_each_step_is_an_event(reg, broker):
    batch = await new_batch(reg)
    inst, cert = await pooled_enterprise(reg, "上海认证全流程有限公司")
    own_admin = auth("institution_admin", institution=inst["id"])
    assert cert["status"] == "pooled" and cert["allowed_actions"] == ["apply", "withdraw"]

    applied = await step(reg, cert["id"], "apply", headers=own_admin, batch_id=batch["id"])
    assert applied.status_code == 200, applied.text
    assert (await step(reg, cert["id"], "approve", headers=own_admin)).status_code == 403, "enterprises cannot review"
    for action in ("approve", "certify", "announce"):
        r = await step(reg, cert["id"], action)
        assert r.status_code == 200, r.text
    announced = r.json()
    assert announced["status"] == "announced" and announced["objection_deadline"] is not None

    public = await reg.http.get("/certified-enterprises", params={"year": 2026})
    assert public.status_code == 200, "the public list needs no login"
    [entry] = [e for e in public.json() if e["institution_id"] == inst["id"]]
    assert entry["batch_name"] == batch["name"] and entry["objection_window_open"] is True

    for action in ("object", "dismiss_objection", "evaluate_rectify", "evaluate_pass"):
        r = await step(reg, cert["id"], action, note=f"{action} by the office")
        assert r.status_code == 200, r.text
    assert r.json()["status"] == "announced" and r.json()["evaluation_result"] == "pass"
    certified_list = (await reg.http.get("/institutions", params={"certification_status": "announced"})).json()
    assert inst["id"] in [i["id"] for i in certified_list["items"]]

    await reg.runtime.relay.publish_pending()
    records = await read_topic(broker.bootstrap, "registry.certification.v1",
                               until=lambda rs: sum(r.key == cert["id"].encode() for r in rs) >= 9)
    events = [json.loads(r.value) for r in records if r.key == cert["id"].encode()]
    assert [e["type"].removeprefix("cn.gov.sh.cjrh.registry.certification.") for e in events] == [
        "pooled", "applied", "reviewed", "certified", "announced", "objection_raised", "announced",
        "rectification_required", "evaluated"]
    last = events[-1]["data"]
    assert last["batch_name"] == batch["name"] and last["year"] == 2026 and last["is_certified"] is True
    assert last["evaluation_result"] == "pass"


async def test_every_invalid_transition_is_refused_with_409_naming_the_allowed_ones(reg):
    batch = await new_batch(reg, 2027)
    for status, path in PATHS.items():
        _, cert = await pooled_enterprise(reg, f"上海非法迁移{status.value}有限公司")
        for action in path:
            r = await step(reg, cert["id"], action.value, batch_id=batch["id"])
            assert r.status_code == 200, (status, action, r.text)
        current = (await reg.http.get(f"/certifications/{cert['id']}", headers=OFFICE)).json()
        assert current["status"] == status.value
        allowed = sorted(a.value for a in CertAction if (status, a) in CERT_TRANSITIONS)
        assert sorted(current["allowed_actions"]) == allowed
        for action in CertAction:
            if (status, action) in CERT_TRANSITIONS:
                continue
            r = await step(reg, cert["id"], action.value, batch_id=batch["id"])
            assert r.status_code == 409, (status, action, r.text)
            body = r.json()
            assert body["type"].endswith("/invalid-transition")
            assert sorted(body["allowed"]) == allowed and body["current_status"] == status.value
            assert action.value in body["detail"]


async def test_certification_access_batches_and_kinds(reg):
    batch = await new_batch(reg, 2028)
    a, cert_a = await pooled_enterprise(reg, "上海认证甲有限公司")
    _, cert_b = await pooled_enterprise(reg, "上海认证乙有限公司")
    admin_a = auth("institution_admin", institution=a["id"])
    assert (await step(reg, cert_b["id"], "apply", headers=admin_a, batch_id=batch["id"])).status_code == 404
    assert (await reg.http.get(f"/certifications/{cert_b['id']}", headers=admin_a)).status_code == 404
    mine = (await reg.http.get("/certifications", headers=admin_a)).json()
    assert [c["id"] for c in mine] == [cert_a["id"]]
    assert (await reg.http.get("/certifications")).status_code == 401

    uni = (await reg.http.post("/institutions", json=school("上海认证测试大学"), headers=OFFICE)).json()
    r = await reg.http.post("/certifications", json={"institution_id": uni["id"]}, headers=OFFICE)
    assert r.status_code == 422 and "only enterprises" in r.json()["detail"]
    twice = await reg.http.post("/certifications", json={"institution_id": a["id"]}, headers=OFFICE)
    assert twice.status_code == 409
    assert (await reg.http.post("/certification-batches", json={"name": "x批次", "year": 2028},
                                headers=admin_a)).status_code == 403

    assert (await step(reg, cert_a["id"], "apply", headers=admin_a)).status_code == 422, "a batch is needed"
    closed = await reg.http.post(f"/certification-batches/{batch['id']}/close", headers=OFFICE)
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    late = await step(reg, cert_a["id"], "apply", headers=admin_a, batch_id=batch["id"])
    assert late.status_code == 409 and "closed" in late.json()["detail"]
    assert (await step(reg, cert_a["id"], "withdraw", headers=admin_a)).status_code == 200
