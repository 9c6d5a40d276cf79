"""The office's shared inbox (issue 16 item 25): platform chatter arrives as one digest per window instead of a
message per event, and every office administrator has their own read and archive state."""

from __future__ import annotations

import uuid

import pytest

from services.notify.tests.integration.support import ce, notify_service, send
from tests.support.harness import auth, wait_until

pytestmark = pytest.mark.integration


def registered(name: str) -> bytes:
    inst = f"inst-{uuid.uuid4().hex[:8]}"
    return ce("registry.institution.registered", {"id": inst, "kind": "enterprise", "name_zh": name,
                                                  "district": "pudong", "status": "active", "version": 1},
              subject=inst)


async def inbox(svc, headers, **params) -> dict:
    r = await svc.http.get("/inbox", headers=headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def test_chatter_is_digested_and_each_office_admin_reads_for_themself(broker):
    tag = uuid.uuid4().hex[:6]
    first, second = auth("office_admin", sub=f"admin-1-{tag}"), auth("office_admin", sub=f"admin-2-{tag}")
    async with notify_service(broker, digest_window_seconds=1.0, housekeeping_interval_seconds=0.1) as svc:
        await send(broker, "registry.institution.v1",
                   *(registered(f"上海动态{tag}{i}有限公司") for i in range(3)))

        async def digest():
            items = (await inbox(svc, first))["items"]
            return [m for m in items if m["event_type"] == "digest" and tag in m["body"]]
        [msg] = await wait_until(digest, what="the office's digest")
        assert msg["title"] == "平台动态汇总（3 条）" and msg["recipient"] == "role:office_admin"
        assert len(msg["data"]["items"]) == 3 and all(i["event_id"] for i in msg["data"]["items"])
        assert not [m for m in (await inbox(svc, first))["items"] if m["event_type"] != "digest"], \
            "no message per registration"

        # one administrator's reading is theirs alone
        unread = (await svc.http.get("/inbox/unread-count", headers=second)).json()["unread"]
        r = await svc.http.post(f"/inbox/{msg['id']}/read", headers=first)
        assert r.status_code == 200 and r.json()["read_at"] is not None
        assert (await svc.http.get("/inbox/unread-count", headers=second)).json()["unread"] == unread
        assert [m["read_at"] for m in (await inbox(svc, second))["items"] if m["id"] == msg["id"]] == [None]
        assert (await svc.http.post(f"/inbox/{msg['id']}/archive", headers=second)).status_code == 200
        assert msg["id"] in [m["id"] for m in (await inbox(svc, first))["items"]], "archived for the second only"
        assert msg["id"] not in [m["id"] for m in (await inbox(svc, second))["items"]]
        assert (await svc.http.post(f"/inbox/{msg['id']}/unread", headers=first)).json()["read_at"] is None
        assert (await svc.http.post("/inbox/read-all", headers=first)).json()["changed"] >= 1
        assert (await svc.http.get("/inbox/unread-count", headers=first)).json()["unread"] == 0
        assert (await svc.http.post("/inbox/read-all", headers=first)).json()["changed"] == 0

        # the office may have chatter immediately instead: one preference
        office = {"recipient": "role:office_admin"}
        r = await svc.http.put("/me/preferences/registry/digest", json={"enabled": False}, headers=first,
                               params=office)
        assert r.status_code == 200, r.text
        assert {"category": "registry", "channel": "digest", "enabled": False, "source": "category",
                "locked": False} in r.json()
        await send(broker, "registry.institution.v1", registered(f"上海即时{tag}有限公司"))

        async def immediate():
            return [m for m in (await inbox(svc, second))["items"] if f"上海即时{tag}" in m["title"]]
        [now] = await wait_until(immediate, what="the registration as its own message")
        assert now["event_type"].endswith("registry.institution.registered")
