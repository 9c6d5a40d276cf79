"""With NOTIFY_HTTP_PROXY set, webhooks and SMS leave through the egress proxy, the only way out on Kubernetes."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from notify.channels import SmsChannel, WebhookChannel
from notify.config import Settings
from notify.dispatch import http_client
from notify.models import Delivery, WebhookSubscription

pytestmark = pytest.mark.integration


class ForwardProxy:
    """A loopback HTTP proxy that records each request line it is asked to forward and answers for the origin."""

    def __init__(self, body: bytes = b'{"code": "OK", "biz_id": "b-1"}') -> None:
        self.requests: list[str] = []
        self.hosts: list[str] = []
        self.body = body
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n")
                       if line.lower().startswith("content-length:")), 0)
        await reader.readexactly(length)
        self.requests.append(head.split("\r\n", 1)[0])
        self.hosts += [line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("host:")]
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                     + str(len(self.body)).encode() + b"\r\nconnection: close\r\n\r\n" + self.body)
        await writer.drain()
        writer.close()


def delivery(channel: str, address: str) -> Delivery:
    """A delivery as the dispatcher hands it to a channel."""
    return Delivery(event_id="e-1", recipient="r-1", channel=channel, category="registration", address=address,
                    payload={"event": {"id": "e-1"}, "sign_name": "上海产教融合", "template_code": "SMS_CJRH_0003",
                             "params": {}}, attempts=1)


async def test_webhooks_and_sms_go_through_the_configured_proxy():
    proxy = ForwardProxy()
    async with proxy as proxy_url:
        settings = Settings(http_proxy=proxy_url, sms_url="http://sms.provider.example/send")
        async with http_client(settings) as client:
            hook = WebhookSubscription(name="portal", url="http://portal.example/hooks/cjrh", secret="s" * 32,
                                       created_by="office")
            sent = await WebhookChannel(settings, client).send(delivery("webhook", hook.url), hook)
            sms = await SmsChannel(settings, client).send(delivery("sms", "13800000000"))
    assert sent.ok and sms.ok, (sent, sms)
    assert proxy.requests == ["POST http://portal.example/hooks/cjrh HTTP/1.1",
                              "POST http://sms.provider.example/send HTTP/1.1"]


async def test_without_a_proxy_a_webhook_goes_straight_to_its_receiver():
    receiver = ForwardProxy(body=b"{}")
    async with receiver as receiver_url:
        settings = Settings(http_proxy=None, webhook_allow_private_networks=True)  # the receiver is on loopback
        async with http_client(settings) as client:
            hook = WebhookSubscription(name="portal", url=f"{receiver_url}/hooks/cjrh", secret="s" * 32,
                                       created_by="office")
            sent = await WebhookChannel(settings, client).send(delivery("webhook", hook.url), hook)
    assert sent.ok, sent
    assert receiver.requests == ["POST /hooks/cjrh HTTP/1.1"]  # origin form: no proxy in between


async def test_a_webhook_named_by_host_goes_to_the_address_checked_and_the_receiver_sees_its_name():
    receiver = ForwardProxy(body=b"{}")
    async with receiver as receiver_url:
        port = receiver_url.rsplit(":", 1)[1]
        settings = Settings(http_proxy=None, webhook_allow_private_networks=True)
        async with http_client(settings) as client:
            hook = WebhookSubscription(name="portal", url=f"http://localhost:{port}/hooks/cjrh", secret="s" * 32,
                                       created_by="office")
            sent = await WebhookChannel(settings, client).send(delivery("webhook", hook.url), hook)
    assert sent.ok, sent
    assert receiver.requests == ["POST /hooks/cjrh HTTP/1.1"] and receiver.hosts == [f"localhost:{port}"]


async def test_a_name_that_rebinds_to_an_internal_address_after_the_check_is_never_followed(monkeypatch):
    """DNS rebinding: the first answer is public, every later one internal. The call goes to the address that was
    checked (the name resolved once per attempt), with the name in Host and in TLS's SNI and certificate check."""
    answers: list[str] = []

    async def rebinding(host, port, *args, **kwargs):
        answer = "93.184.216.34" if not answers else "127.0.0.1"
        answers.append(answer)
        return [(2, 1, 6, "", (answer, 0))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", rebinding)
    seen: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    settings = Settings(http_proxy=None, webhook_allow_private_networks=False)
    hook = WebhookSubscription(name="portal", url="https://hooks.example.org/cjrh", secret="s" * 32,
                               created_by="office")
    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as client:
        sent = await WebhookChannel(settings, client).send(delivery("webhook", hook.url), hook)
        again = await WebhookChannel(settings, client).send(delivery("webhook", hook.url), hook)
    assert sent.ok, sent
    [request] = seen
    assert request.url.host == "93.184.216.34" and request.headers["host"] == "hooks.example.org"
    assert request.extensions["sni_hostname"] == "hooks.example.org"
    assert not again.ok and again.permanent and "non-public address (127.0.0.1)" in again.reason
    assert answers == ["93.184.216.34", "127.0.0.1"], "one resolution per attempt, the one checked"
