"""Templates through the API: previews, sandboxed overrides that take effect, office administrators only."""

from __future__ import annotations

import uuid

import pytest

from services.notify.tests.integration.support import ce, match, notify_service, send
from tests.support.harness import auth, wait_until

pytestmark = pytest.mark.integration

OFFICE = auth("office_admin")


async def test_templates_are_previewed_overridden_in_a_sandbox_and_used(broker):
    async with notify_service(broker) as svc:
        r = await svc.http.post("/templates/preview", headers=OFFICE,
                                json={"event": "events.activity.cancelled", "locale": "en"})
        assert r.status_code == 200 and r.json()["title"] == "Cancelled: 2026 集成电路产教融合专场招聘会"
        r = await svc.http.post("/templates/preview", headers=OFFICE, json={
            "event": "matching.match.proposed", "title": "{{ data.__class__.__mro__ }}", "body": "x"})
        assert r.status_code == 422 and "unsafe" in r.json()["detail"]
        r = await svc.http.post("/templates/preview", headers=auth("member"),
                                json={"event": "events.activity.cancelled"})
        assert r.status_code == 403
        r = await svc.http.get("/templates/matching.match.proposed/zh-CN", headers=OFFICE)
        assert r.json()["source"] == "builtin"
        r = await svc.http.put("/templates/matching.match.proposed/zh-CN", headers=OFFICE, json={
            "title": "{{ ''.__class__ }}", "body": "x"})
        assert r.status_code == 422
        r = await svc.http.put("/templates/nothing.here/zh-CN", headers=OFFICE, json={"title": "t", "body": "b"})
        assert r.status_code == 404
        r = await svc.http.put("/templates/matching.match.proposed/zh-CN", headers=OFFICE, json={
            "title": "【对接】{{ data.opportunity_title }}", "body": "请登录平台查看“{{ data.opportunity_title }}”。"})
        assert r.status_code == 200 and r.json()["source"] == "override"

        inst = f"inst-{uuid.uuid4().hex[:6]}"
        await send(broker, "matching.match.v1", ce("matching.match.proposed", match(f"m-{inst}", a=inst)))
        admin = auth("institution_admin", institution=inst)

        async def titles():
            return [m["title"] for m in (await svc.http.get("/inbox", headers=admin)).json()["items"]]
        assert await wait_until(titles, what="the message rendered with the override") == [
            "【对接】智能制造现代产业学院共建"]
