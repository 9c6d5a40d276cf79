"""Adapters that talk to the outside: SMTP email, signed webhooks and an SMS provider over HTTP."""

from __future__ import annotations

import asyncio
import html
import ipaddress
import json
import socket
import time
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib
import httpx
import orjson

from common import tracing
from common.contact import email_problem, mobile_problem
from common.events import CONTENT_TYPE
from notify.config import Settings
from notify.domain import (
    ID_HEADER,
    SHANGHAI,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Outcome,
    Status,
    sign,
    webhook_retryable,
)
from notify.models import Delivery, WebhookSubscription

PERMANENT_SMS_CODES = frozenset({
    "isv.MOBILE_NUMBER_ILLEGAL", "isv.SMS_SIGNATURE_ILLEGAL", "isv.SMS_TEMPLATE_ILLEGAL",
    "isv.TEMPLATE_MISSING_PARAMETERS", "isv.BLACK_KEY_CONTROL_LIMIT", "isv.MOBILE_COUNT_OVER_LIMIT",
})


def address_problem(channel: str, address: str | None) -> str | None:
    """Why a delivery over `channel` to `address` can never succeed (None when it may): see common.contact."""
    if channel == "email":
        return email_problem(address or "")
    if channel == "sms":
        return mobile_problem(address or "")
    return None


def html_body(title: str, body: str) -> str:
    """The HTML alternative of a message: the same text, escaped, with its title as a heading and its lines kept."""
    paragraphs = "".join(f"<p>{html.escape(line)}</p>" for line in body.splitlines() if line.strip())
    return (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'</head><body style="font-family: sans-serif; line-height: 1.6"><h2>{html.escape(title)}</h2>'
            f'{paragraphs}<hr><p style="color: #888; font-size: small">'
            "上海市产教融合协同育人平台 · 系统自动发送，请勿回复 · An automated message; please do not reply."
            "</p></body></html>")


class EmailChannel:
    """Sends UTF-8 email (plain text with an HTML alternative) over SMTP; 5xx answers are permanent, everything else
    may be retried."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings

    def message(self, d: Delivery) -> EmailMessage:
        """The email for a delivery, with a Message-ID derived from the delivery id (stable across retries)."""
        msg = EmailMessage()
        msg["From"] = self.s.mail_from
        msg["To"] = d.address
        msg["Subject"] = d.subject
        msg["Date"] = format_datetime(datetime.now(SHANGHAI))  # +0800: "-0000" would say the zone is unknown
        msg["Message-ID"] = f"<{d.id}@{self.s.message_id_domain}>"
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-CJRH-Event-Id"] = d.event_id
        msg["X-CJRH-Category"] = d.category
        msg["X-CJRH-Delivery-Id"] = d.id
        msg.set_content(d.body, charset="utf-8")
        msg.add_alternative(html_body(d.subject, d.body), subtype="html", charset="utf-8")
        return msg

    async def send(self, d: Delivery) -> Outcome:
        """Hand the message to the SMTP server: 'sent' means the server accepted it (250)."""
        problem = email_problem(d.address)
        if problem:
            return Outcome(False, reason=f"undeliverable address: {problem}", permanent=True)
        try:
            await aiosmtplib.send(
                self.message(d), hostname=self.s.smtp_host, port=self.s.smtp_port,
                # an empty username or password (an unset variable in compose) means no login
                username=self.s.smtp_username or None, password=self.s.smtp_password or None,
                start_tls=self.s.smtp_starttls, timeout=self.s.send_timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            first = exc.recipients[0]
            return Outcome(False, reason=f"SMTP {first.code} refused the recipient: {first.message}"[:500],
                           permanent=all(c >= 500 for c in codes))
        except aiosmtplib.SMTPResponseException as exc:
            return Outcome(False, reason=f"SMTP {exc.code}: {exc.message}"[:500], permanent=exc.code >= 500)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return Outcome(False, reason=f"SMTP server unreachable: {exc!r}"[:500])
        return Outcome(True, status=Status.SENT)


async def webhook_target_problem(url: str, *, allow_private: bool, proxied: bool = False) -> str | None:
    """Why notify must not call `url` (None when it may): a host that does not resolve, or one on loopback, private,
    link-local or otherwise non-public addresses (unless `allow_private`, for development and tests). Behind an egress
    proxy (`proxied`) the proxy resolves names and keeps the allow-list, so a name notify cannot resolve itself is
    passed on to it; an address literal is still checked here."""
    return (await webhook_target(url, allow_private=allow_private, proxied=proxied))[0]


async def webhook_target(url: str, *, allow_private: bool, proxied: bool = False) -> tuple[str | None, str | None]:
    """(why notify must not call `url` or None, the address to connect to or None): the name is resolved once, every
    address it gives is checked, and the call then goes to the first of them, so a DNS answer that changes between
    the check and the connection (rebinding to an internal address) is never followed. None as the address: connect
    by name (an address literal, or behind the egress proxy, which resolves and enforces the allow-list itself)."""
    host = httpx.URL(url).host
    if not host:
        return "the URL has no host", None
    try:  # an address literal resolves to itself
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:  # a name only the proxy can resolve is passed on to it
        return (None, None) if proxied else (f"the host {host} does not resolve", None)
    addresses = _addresses(infos)
    if not allow_private:
        inside = next((a for a in addresses if not a.is_global or a.is_multicast), None)
        if inside is not None:
            return _non_public(host, inside), None
    if proxied or str(addresses[0]) == host:
        return None, None
    return None, str(addresses[0])


def _addresses(infos) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def _non_public(host: str, addr) -> str:
    return (f"the host {host} is on a non-public address ({addr}); webhooks go to public endpoints "
            "(NOTIFY_WEBHOOK_ALLOW_PRIVATE_NETWORKS allows others)")


def pinned_request(url: str, address: str | None) -> tuple[str, dict[str, str], dict]:
    """The URL, extra headers and request extensions that send a call for `url` to `address` (checked already)
    while the server still sees the name: Host header for HTTP, SNI and certificate check for HTTPS."""
    if address is None:
        return url, {}, {}
    parsed = httpx.URL(url)
    host_header = parsed.host if parsed.port is None else f"{parsed.host}:{parsed.port}"
    extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
    return str(parsed.copy_with(host=address)), {"Host": host_header}, extensions


class WebhookChannel:
    """POSTs the CloudEvent, signed with HMAC-SHA256 over '<timestamp>.<body>'; a 2xx answer means delivered."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self.s = settings
        self.client = client

    def request_parts(self, d: Delivery, sub: WebhookSubscription, now: int) -> tuple[bytes, dict[str, str]]:
        """The body and headers of a webhook call (exposed for tests and the documentation)."""
        body = orjson.dumps(d.payload["event"])
        return body, {
            "Content-Type": CONTENT_TYPE,
            "User-Agent": self.s.webhook_user_agent,
            ID_HEADER: d.event_id,
            TIMESTAMP_HEADER: str(now),
            SIGNATURE_HEADER: sign(sub.secret, now, body),
            "Webhook-Delivery": d.id,
            "Webhook-Attempt": str(d.attempts),
        }

    async def send(self, d: Delivery, sub: WebhookSubscription | None) -> Outcome:
        """Deliver one event to one subscription."""
        if sub is None or not sub.active:
            return Outcome(False, reason="the webhook subscription was removed or deactivated", permanent=True)
        # Checked again at each send, and the call goes to the very address checked: a name that resolved to a public
        # address may not any more, or may answer differently a moment later (DNS rebinding).
        refused, address = await webhook_target(sub.url, allow_private=self.s.webhook_allow_private_networks,
                                                proxied=bool(self.s.http_proxy))
        if refused:
            return Outcome(False, reason=f"webhook target refused: {refused}", permanent=True)
        body, headers = self.request_parts(d, sub, int(time.time()))
        headers.update(tracing.current_context())  # W3C traceparent of this attempt's span, when tracing is on
        url, pinned_headers, extensions = pinned_request(sub.url, address)
        headers.update(pinned_headers)
        try:
            r = await self.client.post(url, content=body, headers=headers, timeout=self.s.send_timeout_seconds,
                                       extensions=extensions)
        except httpx.HTTPError as exc:
            return Outcome(False, reason=f"webhook unreachable: {exc.__class__.__name__}: {exc}"[:500])
        if 200 <= r.status_code < 300:
            return Outcome(True, status=Status.DELIVERED)
        return Outcome(False, reason=f"webhook answered HTTP {r.status_code}: {r.text[:200]}",
                       permanent=not webhook_retryable(r.status_code))


class SmsChannel:
    """Sends a templated SMS through a provider's HTTP API with the sender signature and template code."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self.s = settings
        self.client = client

    async def send(self, d: Delivery) -> Outcome:
        """Submit the SMS; 'sent' means the provider accepted it (a delivery receipt may follow)."""
        if not self.s.sms_url:
            return Outcome(False, reason="no SMS provider configured (NOTIFY_SMS_URL)", permanent=True)
        problem = mobile_problem(d.address)
        if problem:
            return Outcome(False, reason=f"undeliverable number: {problem}", permanent=True)
        req = {
            "phone_numbers": d.address, "sign_name": d.payload["sign_name"],
            "template_code": d.payload["template_code"],
            "template_param": json.dumps(d.payload["params"], ensure_ascii=False), "out_id": d.id,
        }
        try:
            r = await self.client.post(self.s.sms_url, json=req, timeout=self.s.send_timeout_seconds,
                                       headers={"Authorization": f"Bearer {self.s.sms_api_key}"})
        except httpx.HTTPError as exc:
            return Outcome(False, reason=f"SMS provider unreachable: {exc.__class__.__name__}: {exc}"[:500])
        if r.status_code >= 500 or r.status_code == 429:
            return Outcome(False, reason=f"SMS provider answered HTTP {r.status_code}")
        try:
            doc = r.json()
        except ValueError:
            return Outcome(False, reason=f"SMS provider answered HTTP {r.status_code} without JSON")
        code = str(doc.get("code", ""))
        if r.status_code == 200 and code == "OK":
            return Outcome(True, status=Status.SENT, provider_id=doc.get("biz_id"))
        return Outcome(False, reason=f"SMS provider refused: {code} {doc.get('message', '')}".strip()[:500],
                       permanent=code in PERMANENT_SMS_CODES or 400 <= r.status_code < 500)
