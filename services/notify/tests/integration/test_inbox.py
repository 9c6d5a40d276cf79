"""Rules into inboxes, and the inbox API: each caller reads and changes only their own messages.

(Tests wait for outcomes with wait_until rather than svc.idle(): the consumer group outlives each test's service, so
partitions that get nothing new in a test would never look "caught up" to idle().)
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from notify.models import InboxMessage
from services.notify.tests.integration.support import (
    activity,
    ce,
    certification,
    match,
    notify_service,
    registration,
    send,
)
from tests.support.harness import auth, read_topic, wait_until

pytestmark = pytest.mark.integration


async def inbox_of(svc, headers, **params):
    r = await svc.http.get("/inbox", headers=headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def wait_inbox(svc, headers, n: int = 1, what: str = "inbox messages", titled: str = "", **params):
    """The inbox once it holds at least n items (whose title starts with `titled`, when given)."""
    async def check():
        got = await inbox_of(svc, headers, **params)
        return got if sum(m["title"].startswith(titled) for m in got["items"]) >= n else None
    return await wait_until(check, what=what)


async def test_rules_reach_the_right_inboxes_once_and_only_their_owners_can_touch_them(broker):
    act = f"act-{uuid.uuid4().hex[:6]}"
    alice, bob, carol = (f"{n}-{uuid.uuid4().hex[:6]}" for n in ("alice", "bob", "carol"))
    confirmed = ce("events.registration.confirmed", registration(alice, act))
    async with notify_service(broker) as svc:
        await send(broker, "events.registration.v1",
                   confirmed, confirmed,  # a duplicate delivery of the same event
                   ce("events.registration.waitlisted", registration(bob, act, status="waitlisted", queue_position=2)),
                   ce("events.registration.confirmed", registration(carol, act)),
                   ce("events.registration.withdrawn", registration(carol, act, status="withdrawn", version=2)),
                   key=act.encode())
        await send(broker, "matching.match.v1", ce("matching.match.proposed", match("m-1", a="inst-a", b="inst-b")))
        await send(broker, "registry.certification.v1",
                   ce("registry.certification.certified", certification("c-1", "inst-a", status="certified")))

        a = auth("member", sub=alice)
        mine = await wait_inbox(svc, a, what="alice's confirmation")
        assert mine["unread"] == 1 and len(mine["items"]) == 1, "the duplicate event landed once"
        [msg] = mine["items"]
        assert msg["title"] == "报名成功：2026 集成电路产教融合专场招聘会" and msg["category"] == "registration"

        b = auth("member", sub=bob)
        [w] = (await wait_inbox(svc, b, what="bob's waitlist"))["items"]
        assert "候补第 2 位" in w["body"]

        # only one's own: another user neither sees nor changes alice's message
        assert msg["id"] not in [m["id"] for m in (await inbox_of(svc, b))["items"]]
        r = await svc.http.post(f"/inbox/{msg['id']}/read", headers=b)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")

        r = await svc.http.post(f"/inbox/{msg['id']}/read", headers=a)
        assert r.status_code == 200 and r.json()["read_at"] is not None
        assert (await svc.http.get("/inbox/unread-count", headers=a)).json() == {"unread": 0}
        await svc.http.post(f"/inbox/{msg['id']}/unread", headers=a)
        assert (await svc.http.get("/inbox/unread-count", headers=a)).json() == {"unread": 1}
        assert (await svc.http.post(f"/inbox/{msg['id']}/archive", headers=a)).status_code == 200
        assert (await inbox_of(svc, a))["items"] == []
        assert [m["id"] for m in (await inbox_of(svc, a, state="archived"))["items"]] == [msg["id"]]
        assert (await svc.http.post(f"/inbox/{msg['id']}/burn", headers=a)).status_code == 422

        # a match reaches both institutions, read by their administrators (and not by a plain member)
        for inst in ("inst-a", "inst-b"):
            admin = auth("institution_admin", institution=inst)
            # topics are consumed independently: inst-a's certification notice may come first
            got = await wait_inbox(svc, admin, titled="收到新的对接提议", what=f"{inst}'s match")
            assert sum(m["title"].startswith("收到新的对接提议") for m in got["items"]) == 1
        assert (await inbox_of(svc, auth("member", institution="inst-a")))["items"] == []

        # certification reaches the enterprise and the public feed (no sign-in)
        public = await wait_until(lambda: _json(svc.http.get("/feed/certifications")), what="the public feed")
        assert [m["title"] for m in public] == ["产教融合型企业认定通过：上海临港智造有限公司"]

        # paging is stable
        c = auth("member", sub=carol)
        await wait_inbox(svc, c, 2, what="carol's two messages")
        carol_all = await inbox_of(svc, c, limit=1)
        assert len(carol_all["items"]) == 1 and carol_all["next_cursor"]
        rest = await inbox_of(svc, c, limit=1, cursor=carol_all["next_cursor"])
        assert len(rest["items"]) == 1 and rest["items"][0]["id"] != carol_all["items"][0]["id"]
        assert (await svc.http.post("/inbox/read-all", headers=c)).json() == {"changed": 2}


async def test_a_cancellation_reaches_every_active_registrant_and_the_organiser(broker):
    act = f"act-{uuid.uuid4().hex[:6]}"
    people = [f"p{i}-{act}" for i in range(30)]
    regs = [ce("events.registration.confirmed", registration(p, act)) for p in people]
    regs.append(ce("events.registration.withdrawn", registration(people[0], act, status="withdrawn", version=2)))
    async with notify_service(broker) as svc:
        await send(broker, "events.registration.v1", *regs, key=act.encode())

        async def confirmations():
            async with svc.runtime.sessions() as s:
                return await s.scalar(select(func.count()).select_from(InboxMessage)
                                      .where(InboxMessage.category == "registration")) == 31
        # topics are consumed independently: the registrations must be known before the cancellation arrives
        await wait_until(confirmations, what="30 confirmations and a withdrawal")
        await send(broker, "events.activity.v1", ce("events.activity.cancelled", activity(act, organiser="inst-o")),
                   key=act.encode())

        async def cancelled_count():
            async with svc.runtime.sessions() as s:
                return await s.scalar(select(func.count()).select_from(InboxMessage)
                                      .where(InboxMessage.category == "cancellation"))

        await wait_until(lambda: _eq(cancelled_count(), 30), what="29 registrants and the organiser")
        got = await inbox_of(svc, auth("member", sub=people[5]), category="cancellation")
        assert got["items"][0]["title"] == "活动取消：2026 集成电路产教融合专场招聘会"
        assert got["items"][0]["priority"] == "critical"
        assert (await inbox_of(svc, auth("member", sub=people[0]), category="cancellation"))["items"] == []
        org = await inbox_of(svc, auth("institution_admin", institution="inst-o"), category="cancellation")
        assert len(org["items"]) == 1


async def _json(coro):
    return (await coro).json()


async def _eq(coro, value) -> bool:
    return (await coro) == value


async def test_an_invalid_payload_goes_to_the_dead_letter_topic_with_the_reason(broker):
    bad = ce("events.registration.confirmed", {"id": "r-x", "status": "confirmed"}, id=f"bad-{uuid.uuid4()}")
    async with notify_service(broker):
        await send(broker, "events.registration.v1", bad)
        records = await read_topic(broker.bootstrap, "events.registration.v1.dlq",
                                   until=lambda rs: any(r.value == bad for r in rs))
        [rec] = [r for r in records if r.value == bad]
        reason = dict(rec.headers)["dlq.reason"].decode()
        assert "participant_id" in reason and "activity_id" in reason
