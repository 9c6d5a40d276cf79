"""What an outside tester found missing in deliveries (issue 16, items 21-24): metrics by channel and outcome, HTML
email with a real zone, addresses that can never work, webhook targets and event names, offer deadlines by SMS, and
the SMTP reply code in a dead delivery's reason."""

from __future__ import annotations

import json
import uuid

import pytest
from prometheus_client import REGISTRY

from notify.models import InstitutionContact, RecipientProfile
from services.notify.tests.integration.support import (
    HttpReceiver,
    SmtpSink,
    ce,
    contact,
    match,
    notify_service,
    registration,
    send,
)
from tests.support.harness import auth, wait_until

pytestmark = pytest.mark.integration

OFFICE = auth("office_admin")


def counted(channel: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("notify_deliveries_total",
                                     {"service": "notify", "channel": channel, "outcome": outcome}) or 0.0


async def delivery(svc, what: str, **params) -> dict:
    want = params.pop("status", None)

    async def check():
        r = await svc.http.get("/deliveries", headers=OFFICE, params=params)
        items = r.json()["items"]
        return items[0] if len(items) == 1 and (want is None or items[0]["status"] == want) else None
    return await wait_until(check, what=what)


async def contact_kept(svc, inst: str) -> None:
    """Wait until notify's projection has the institution's contact (it decides whether email is planned)."""
    async def kept():
        async with svc.runtime.sessions() as s:
            return await s.get(InstitutionContact, inst)
    await wait_until(kept, what=f"the contact of {inst}")


class RefusingSmtp(SmtpSink):
    """An SMTP server whose mailbox does not exist: 550 to every recipient."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        """Refuse the recipient permanently."""
        return "550 5.1.1 <" + address + ">: mailbox unavailable"


async def test_email_is_html_and_text_with_a_real_zone_and_outcomes_are_counted(broker):
    inst = f"inst-{uuid.uuid4().hex[:6]}"
    sent_before = counted("email", "sent")
    latency_before = REGISTRY.get_sample_value("notify_delivery_latency_seconds_count",
                                               {"service": "notify", "channel": "email"}) or 0.0
    with SmtpSink() as smtp:
        async with notify_service(broker, smtp_port=smtp.port) as svc:
            await send(broker, "registry.contact.v1", ce("registry.contact.updated", contact(inst), subject=inst))
            await contact_kept(svc, inst)
            await send(broker, "matching.match.v1", ce("matching.match.proposed", match(f"m-{inst}", a=inst)))
            await delivery(svc, "the sent email", recipient=f"institution:{inst}", status="sent")
            [msg] = smtp.messages
            assert msg.get_content_type() == "multipart/alternative"
            text, html = msg.get_body(("plain",)), msg.get_body(("html",))
            assert "智能制造现代产业学院共建" in text.get_content()
            assert "<h2>收到新的对接提议：智能制造现代产业学院共建</h2>" in html.get_content()
            assert msg["Date"].endswith("+0800"), msg["Date"]

            assert counted("email", "sent") == sent_before + 1
            assert (REGISTRY.get_sample_value("notify_delivery_latency_seconds_count",
                                              {"service": "notify", "channel": "email"}) or 0) == latency_before + 1
            metrics = (await svc.http.get("/metrics")).text
            assert 'notify_deliveries_total{channel="email",outcome="sent",service="notify"}' in metrics


async def test_an_address_that_can_never_work_fails_at_once_with_the_reason(broker):
    inst, good, landline = (f"{p}-{uuid.uuid4().hex[:6]}" for p in ("inst", "user", "user"))
    act = f"act-{uuid.uuid4().hex[:6]}"
    dead_before, sms_dead_before = counted("email", "dead"), counted("sms", "dead")
    with SmtpSink() as smtp, HttpReceiver(answer=lambda body: {"code": "OK", "biz_id": "b-1"}) as sms:
        async with notify_service(broker, smtp_port=smtp.port, sms_url=sms.url) as svc:
            # what the registry accepted before it validated addresses
            await send(broker, "registry.contact.v1", ce("registry.contact.updated", contact(
                inst, email="x@y.cn\r\nBcc: victim@example.com", phone=None), subject=inst))
            await contact_kept(svc, inst)
            # a profile stored before profiles were validated: a landline for SMS
            async with svc.runtime.sessions() as s, s.begin():
                s.add(RecipientProfile(recipient=landline, phone="021-12345678"))
            r = await svc.http.put("/me/profile", headers=auth("member", sub=good),
                                   json={"email": "li@example.cn", "phone": "13900001111"})
            assert r.status_code == 200, r.text
            for bad in ({"email": "x@y.cn\r\nBcc: victim@example.com"}, {"email": "not-an-email"},
                        {"phone": "not-a-phone"}):
                r = await svc.http.put("/me/profile", headers=auth("member", sub=good), json=bad)
                assert r.status_code == 422 and "not a usable" in r.json()["detail"], r.text

            await send(broker, "matching.match.v1", ce("matching.match.proposed", match(f"m-{inst}", a=inst)))
            dead = await delivery(svc, "the email to a broken address", recipient=f"institution:{inst}",
                                  status="dead")
            assert dead["attempts"] == 0 and "undeliverable address" in dead["reason"]
            assert "line break" in dead["reason"]

            offer = {"offer_expires_at": "2026-05-18T10:00:00+00:00", "status": "offered"}
            for who in (good, landline):
                await send(broker, "events.registration.v1", ce("events.registration.offer_made", registration(
                    who, act, id=f"reg-{who}", **offer)), key=act.encode())
            no_sms = await delivery(svc, "the SMS to a landline", recipient=landline, channel="sms", status="dead")
            assert no_sms["attempts"] == 0 and "landline" in no_sms["reason"]
            await delivery(svc, "the offer SMS", recipient=good, channel="sms", status="sent")
            [req] = [json.loads(r["body"]) for r in sms.requests]
            params = json.loads(req["template_param"])
            assert params["deadline"] == "2026-05-18 18:00", "the accept-by deadline, Shanghai time"
            assert len(smtp.messages) == 1 and smtp.messages[0]["To"] == "li@example.cn"
            assert counted("email", "dead") == dead_before + 1 and counted("sms", "dead") == sms_dead_before + 1


async def test_a_dead_email_keeps_the_smtp_reply_code(broker):
    inst = f"inst-{uuid.uuid4().hex[:6]}"
    with RefusingSmtp() as smtp:
        async with notify_service(broker, smtp_port=smtp.port) as svc:
            await send(broker, "registry.contact.v1", ce("registry.contact.updated", contact(inst), subject=inst))
            await contact_kept(svc, inst)
            await send(broker, "matching.match.v1", ce("matching.match.proposed", match(f"m-{inst}", a=inst)))
            dead = await delivery(svc, "the refused email", recipient=f"institution:{inst}", status="dead")
            assert dead["attempts"] == 1 and "SMTP 550" in dead["reason"] and "mailbox unavailable" in dead["reason"]


async def test_webhooks_name_real_events_and_public_targets_and_delivery_filters_are_checked(broker):
    async with notify_service(broker, webhook_allow_private_networks=False) as svc:
        r = await svc.http.post("/webhooks", headers=OFFICE, json={
            "name": "typo", "url": "https://hooks.example.org/cjrh", "events": ["registry.institutoin.registerd"]})
        body = r.json()
        assert r.status_code == 422 and body["unknown"] == ["registry.institutoin.registerd"]
        assert "registry.institution.registered" in body["valid_events"]
        assert "registry.institution.registered" in body["detail"]
        for url in ("http://127.0.0.1:9000/hook", "http://10.1.2.3/hook", "http://[::1]/hook",
                    "http://169.254.169.254/latest/meta-data", "http://localhost:8080/hook"):
            r = await svc.http.post("/webhooks", headers=OFFICE, json={
                "name": "inside", "url": url, "events": ["registry.certification.*"]})
            assert r.status_code == 422 and "webhook URL refused" in r.json()["detail"], (url, r.text)
        for params in ({"status": "bogus"}, {"channel": "pigeon"}):
            r = await svc.http.get("/deliveries", headers=OFFICE, params=params)
            assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        assert (await svc.http.get("/deliveries", headers=OFFICE, params={"status": "dead"})).status_code == 200


