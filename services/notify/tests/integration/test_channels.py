"""Email over a real SMTP server, signed webhooks against a real failing receiver, SMS, preferences, quiet hours,
digests, honest delivery status on notify.delivery.v1, replay, and a kill mid-send.

(Outcomes are awaited with wait_until, not svc.idle(): see test_inbox.py.)
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from sqlalchemy import select

from common.events import CloudEvent
from notify.dispatch import FakeClock
from notify.domain import SHANGHAI, verify
from notify.models import Delivery
from services.notify.tests.integration.support import (
    HttpReceiver,
    SmtpSink,
    activity,
    ce,
    certification,
    contact,
    match,
    notify_service,
    registration,
    send,
)
from tests.support.harness import auth, read_topic, wait_until

pytestmark = pytest.mark.integration

OFFICE = auth("office_admin")


async def deliveries(svc, headers=OFFICE, **params) -> list[dict]:
    r = await svc.http.get("/deliveries", headers=headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def one_delivery(svc, what: str, **params) -> dict:
    """Wait until exactly one delivery matches and satisfies `status` when given."""
    want = params.pop("status", None)

    async def check():
        got = await deliveries(svc, **params)
        return got[0] if len(got) == 1 and (want is None or got[0]["status"] == want) else None
    return await wait_until(check, what=what)


async def test_email_goes_over_smtp_with_its_headers_and_honest_status_and_preferences_apply(broker):
    inst = f"inst-{uuid.uuid4().hex[:6]}"
    proposed = ce("matching.match.proposed", match(f"m-{inst}", a=inst, b="inst-without-contact"))
    proposed_id = CloudEvent.from_bytes(proposed).id
    with SmtpSink() as smtp:
        async with notify_service(broker, smtp_port=smtp.port) as svc:
            await send(broker, "registry.contact.v1", ce("registry.contact.updated", contact(inst), subject=inst))
            await asyncio.sleep(0.3)  # different topics: let the contact land before the match
            await send(broker, "matching.match.v1", proposed)
            d = await one_delivery(svc, "the email delivery", event_id=proposed_id, status="sent")
            await wait_until(lambda: smtp.messages, what="the email at the SMTP server")
            [msg] = smtp.messages
            assert msg["Subject"] == "收到新的对接提议：智能制造现代产业学院共建"
            assert msg["To"] == "wang@example.cn" and "noreply@platform.cjrh.sh.cn" in msg["From"]
            assert msg["X-CJRH-Event-Id"] == proposed_id and msg["X-CJRH-Category"] == "match"
            assert msg["Message-ID"] == f"<{d['id']}@notify.platform.cjrh.sh.cn>"
            assert msg["Auto-Submitted"] == "auto-generated"
            assert "关于“智能制造现代产业学院共建”的对接" in msg.get_body(("plain",)).get_content()
            assert d["channel"] == "email" and d["attempts"] == 1 and d["address"] == "wang@example.cn"

            # who sees which delivery: the institution's admin (address masked), not a member
            admin = auth("institution_admin", institution=inst)
            [mine] = await deliveries(svc, admin)
            assert mine["id"] == d["id"] and mine["address"] == "w***@example.cn"
            assert await deliveries(svc, auth("member")) == []

            # the status history is published on notify.delivery.v1
            recs = await read_topic(broker.bootstrap, "notify.delivery.v1",
                                    until=lambda rs: sum(r.key == d["id"].encode() for r in rs) >= 2)
            kinds = [CloudEvent.from_bytes(r.value) for r in recs if r.key == d["id"].encode()]
            assert [k.type.rsplit(".", 1)[1] for k in kinds] == ["queued", "sent"]
            assert kinds[-1].data["status"] == "sent" and "address" not in kinds[-1].data

            # preferences: muting match email stops the email, not the inbox; critical ones cannot be muted
            who = {"recipient": f"institution:{inst}"}
            r = await svc.http.put("/me/preferences/match/email", json={"enabled": False}, headers=admin, params=who)
            assert r.status_code == 200, r.text
            assert {"category": "match", "channel": "email", "enabled": False, "source": "category",
                    "locked": False} in r.json()
            r = await svc.http.put("/me/preferences/cancellation/email", json={"enabled": False}, headers=admin,
                                   params=who)
            assert r.status_code == 422 and "critical" in r.json()["detail"]
            r = await svc.http.put("/me/preferences/match/email", json={"enabled": False},
                                   headers=auth("member"), params=who)
            assert r.status_code == 403
            accepted = ce("matching.match.accepted", match(f"m-{inst}", status="accepted", a=inst, b="x", version=2))
            await send(broker, "matching.match.v1", accepted)

            async def accepted_in_inbox():
                items = (await svc.http.get("/inbox", headers=admin)).json()["items"]
                return [m for m in items if m["event_id"] == CloudEvent.from_bytes(accepted).id]
            await wait_until(accepted_in_inbox, what="the accepted match in the inbox")
            await asyncio.sleep(0.3)
            assert await deliveries(svc, event_id=CloudEvent.from_bytes(accepted).id) == []
            assert len(smtp.messages) == 1


async def test_webhooks_are_signed_retried_with_backoff_dead_after_n_attempts_and_replayable(broker):
    secret = "municipal-platform-secret-0001"
    with HttpReceiver([503, 500], default=200) as flaky, HttpReceiver(default=503) as down, \
            HttpReceiver(default=410) as gone:
        async with notify_service(broker, max_attempts=3) as svc:
            for name, url in (("municipal", flaky.url), ("portal", down.url), ("retired", gone.url)):
                r = await svc.http.post("/webhooks", headers=OFFICE, json={
                    "name": name, "url": url, "events": ["registry.certification.*"], "secret": secret})
                assert r.status_code == 201 and r.json()["secret"] == secret
            listed = (await svc.http.get("/webhooks", headers=OFFICE)).json()
            assert len(listed) == 3 and all(w["secret"] is None for w in listed)
            assert (await svc.http.get("/webhooks", headers=auth("institution_admin", institution="i"))).status_code \
                == 403

            def hook(receiver) -> str:
                return "webhook:" + next(w["id"] for w in listed if w["url"] == receiver.url)

            raw = ce("registry.certification.revoked", certification("c-9", "inst-w", status="revoked"))
            event_id = CloudEvent.from_bytes(raw).id
            started = time.monotonic()
            await send(broker, "registry.certification.v1", raw)

            ok = await one_delivery(svc, "delivered after two failures", event_id=event_id,
                                    recipient=hook(flaky),
                                    status="delivered")
            assert ok["attempts"] == 3 and len(flaky.requests) == 3
            now = int(time.time())
            for req in flaky.requests:  # the receiver verifies every attempt
                h = req["headers"]
                assert verify(secret, timestamp=h["Webhook-Timestamp"], body=req["body"],
                              signature=h["Webhook-Signature"], now=now)
                assert h["Webhook-Id"] == event_id and h["Content-Type"].startswith("application/cloudevents+json")
                assert orjson.loads(req["body"])["id"] == event_id
            assert not verify("wrong-secret", timestamp=h["Webhook-Timestamp"], body=req["body"],
                              signature=h["Webhook-Signature"], now=now)
            assert [r["headers"]["Webhook-Attempt"] for r in flaky.requests] == ["1", "2", "3"]
            assert time.monotonic() - started >= 0.05, "backoff waited between attempts"

            dead = await one_delivery(svc, "dead after 3 attempts", event_id=event_id, status="dead",
                                      recipient=hook(down))
            assert dead["attempts"] == 3 and "gave up after 3 attempts" in dead["reason"] and "503" in dead["reason"]
            assert len(down.requests) == 3
            permanent = await one_delivery(svc, "410 is permanent", event_id=event_id, status="dead",
                                           recipient=hook(gone))
            assert permanent["attempts"] == 1 and "permanent" in permanent["reason"]

            # an administrator replays the dead one once the platform is back
            r = await svc.http.post(f"/deliveries/{dead['id']}/replay", headers=auth("institution_admin",
                                                                                      institution="inst-w"))
            assert r.status_code == 403
            r = await svc.http.post(f"/deliveries/{ok['id']}/replay", headers=OFFICE)
            assert r.status_code == 409 and r.json()["allowed"] == ["failed", "dead"]
            down.default = 200
            r = await svc.http.post(f"/deliveries/{dead['id']}/replay", headers=OFFICE)
            assert r.status_code == 200 and r.json()["status"] == "queued"
            again = await one_delivery(svc, "replayed delivery", event_id=event_id, status="delivered",
                                       recipient=dead["recipient"])
            assert again["replays"] == 1 and len(down.requests) == 4
            assert len(flaky.requests) == 3, "replaying one subscription redoes only what failed"


def at_shanghai(y, mo, d, h, mi=0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SHANGHAI).astimezone(UTC)


async def test_quiet_hours_delay_normal_email_but_not_critical_email_and_sms_and_digests_batch(broker):
    clock = FakeClock(at_shanghai(2026, 5, 10, 23, 0))
    inst, user, act = (f"{p}-{uuid.uuid4().hex[:6]}" for p in ("inst", "user", "act"))
    with SmtpSink() as smtp, HttpReceiver(answer=lambda body: {"code": "OK", "biz_id": "biz-" + user}) as sms:
        async with notify_service(broker, clock=clock, smtp_port=smtp.port, sms_url=sms.url, quiet_start="22:00",
                                  quiet_end="08:00", digest_window_seconds=3600) as svc:
            me = auth("member", sub=user)
            r = await svc.http.put("/me/profile", headers=me, json={
                "email": "li@example.cn", "phone": "13900001111", "locale": "en"})
            assert r.status_code == 200 and r.json()["locale"] == "en"
            await send(broker, "registry.contact.v1", ce("registry.contact.updated", contact(inst, phone=None)))
            await send(broker, "events.registration.v1", ce("events.registration.confirmed",
                                                            registration(user, act)), key=act.encode())
            # the confirmation (normal) is held by quiet hours; wait for it before cancelling
            held = await one_delivery(svc, "held confirmation email", recipient=user, channel="email")
            assert held["status"] == "queued" and "held by quiet hours until 2026-05-11 08:00" in held["reason"]
            await send(broker, "events.activity.v1", ce("events.activity.cancelled", activity(act)),
                       key=act.encode())
            await send(broker, "matching.match.v1", ce("matching.match.proposed", match(f"m-{inst}", a=inst)))
            for status in ("applied", "reviewed"):
                await send(broker, "registry.certification.v1", ce(
                    f"registry.certification.{status}", certification(f"c-{inst}", inst, status=status)))

            # critical: email and SMS go at 23:00 anyway
            await wait_until(lambda: len(smtp.messages) == 1 and sms.requests, what="critical email and SMS")
            assert smtp.messages[0]["Subject"].startswith("Cancelled:"), "the user's locale is English"
            req = json.loads(sms.requests[0]["body"])
            assert req["sign_name"] == "上海产教融合" and req["template_code"] == "SMS_CJRH_0001"
            assert req["phone_numbers"] == "13900001111" and json.loads(req["template_param"])["title"]
            assert sms.requests[0]["headers"]["Authorization"] == "Bearer dev-sms-key"
            sms_d = await one_delivery(svc, "sms sent", recipient=user, channel="sms", status="sent")
            match_d = await one_delivery(svc, "held match email", recipient=f"institution:{inst}", channel="email")
            assert match_d["status"] == "queued" and match_d["reason"].startswith("held by quiet hours")

            # the provider's receipt makes the SMS delivered
            r = await svc.http.post("/deliveries/sms-receipts", headers=auth("integration"),
                                    json={"biz_id": f"biz-{user}", "success": True})
            assert r.status_code == 200 and r.json()["status"] == "delivered" and r.json()["id"] == sms_d["id"]
            assert (await svc.http.post("/deliveries/sms-receipts", headers=auth("member"),
                                        json={"biz_id": f"biz-{user}", "success": True})).status_code == 403

            await asyncio.sleep(0.5)
            assert len(smtp.messages) == 1, "nothing else left during quiet hours"
            async with svc.runtime.sessions() as s:
                digests = (await s.execute(select(Delivery).where(Delivery.event_id.like("digest:%")))).all()
            assert digests == [], "the digest window has not passed"

            clock.advance(hours=9, minutes=30)  # 08:30 next morning, and past the digest window
            svc.app.state.dispatcher.wake()
            await wait_until(lambda: len(smtp.messages) == 4, what="held emails and the digest")
            subjects = sorted(m["Subject"] for m in smtp.messages)
            assert "进展动态汇总（2 条）" in subjects
            digest = next(m for m in smtp.messages if m["Subject"] == "进展动态汇总（2 条）")
            text = digest.get_body(("plain",)).get_content()
            assert "认定申请已提交" in text and "认定申请已通过审核" in text
            assert digest["To"] == "wang@example.cn"
            assert any(s.startswith("Registration confirmed") for s in subjects)


async def test_a_delivery_interrupted_mid_send_is_never_sent_twice(broker):
    from tests.support.harness import fresh_database
    db = await fresh_database("notify")
    inst = f"inst-{uuid.uuid4().hex[:6]}"
    hold = threading.Event()
    with SmtpSink(hold=hold) as smtp:
        async with notify_service(broker, db_url=db, smtp_port=smtp.port) as svc:
            await send(broker, "registry.contact.v1", ce("registry.contact.updated", contact(inst)))
            await asyncio.sleep(0.3)
            await send(broker, "matching.match.v1", ce("matching.match.proposed", match(f"m-{inst}", a=inst)))
            await one_delivery(svc, "a claim taken before the send", channel="email", status="sending")
        # the service stopped while the SMTP server still held the message: the outcome is unknown
        hold.set()
        async with notify_service(broker, db_url=db, smtp_port=smtp.port, send_lease_seconds=0) as svc:
            d = await one_delivery(svc, "the interrupted delivery", channel="email", status="dead")
            assert "interrupted mid-send" in d["reason"] and d["attempts"] == 1
            await asyncio.sleep(0.5)
            assert len(smtp.messages) <= 1, "never sent a second time"
            r = await svc.http.post(f"/deliveries/{d['id']}/replay", headers=OFFICE)
            assert r.status_code == 200
            await one_delivery(svc, "replayed by an administrator", channel="email", status="sent")
