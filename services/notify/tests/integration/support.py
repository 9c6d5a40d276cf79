"""Helpers for notify's integration tests: CloudEvent bytes, a real SMTP server, a real HTTP receiver."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

import notify.main
from common.events import CloudEvent
from notify.config import Settings
from notify.dispatch import Clock
from tests.support.harness import fresh_database, produce, run_service

PREFIX = "cn.gov.sh.cjrh"


def ce(name: str, data: dict[str, Any], *, id: str | None = None, subject: str | None = None,
       source: str | None = None) -> bytes:
    """The bytes of a CloudEvent as another service would publish it (with that service's source, as the consumers'
    provenance check demands)."""
    source = source or f"//platform.cjrh.sh.cn/{name.split('.')[0]}"
    return CloudEvent(id=id or str(uuid.uuid4()), source=source, type=f"{PREFIX}.{name}",
                      subject=subject or data.get("id"), time=datetime.now(UTC), data=data).to_bytes()


async def send(broker, topic: str, *events: bytes, key: bytes = b"k") -> None:
    """Produce events to a topic."""
    await produce(broker.bootstrap, topic, list(events), key=key)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpSink:
    """A real SMTP server (aiosmtpd) in a thread that keeps every message it accepts."""

    def __init__(self, *, hold: threading.Event | None = None) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.hold = hold
        self.port = _free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):
        """Accept a message (after the hold is released, when one is set)."""
        if self.hold is not None:
            import asyncio
            await asyncio.get_running_loop().run_in_executor(None, self.hold.wait, 30)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        return "250 OK"

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()


class HttpReceiver:
    """A real HTTP server on 127.0.0.1 answering with scripted status codes, recording every request."""

    def __init__(self, statuses: list[int] | None = None, *, default: int = 200,
                 answer: dict[str, Any] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.default = default
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                code = receiver.statuses.pop(0) if receiver.statuses else receiver.default
                payload = json.dumps(receiver.answer(body) if callable(receiver.answer) else
                                     (receiver.answer or {"ok": code < 300})).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> HttpReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


TEST_SETTINGS = dict(
    dispatch_interval_seconds=0.05, retry_base_seconds=0.05, retry_cap_seconds=0.2, quiet_start="00:00",
    quiet_end="00:00", send_timeout_seconds=5.0, webhook_allow_private_networks=True,
)


@asynccontextmanager
async def notify_service(broker, *, db_url: str | None = None, clock: Clock | None = None,
                         **overrides: Any) -> AsyncIterator:
    """The notify service in-process, with fast retries and quiet hours off unless overridden."""
    settings = {**TEST_SETTINGS, **overrides}
    async with run_service(lambda s: notify.main.create_app(s, clock=clock), Settings, broker=broker,
                           db_url=db_url or await fresh_database("notify"), **settings) as svc:
        yield svc


def registration(participant: str, activity: str, *, status: str = "confirmed", version: int = 1,
                 title: str = "2026 集成电路产教融合专场招聘会", **extra: Any) -> dict[str, Any]:
    """A registration payload as the events service publishes it."""
    return {"id": extra.pop("id", f"reg-{participant}-{activity}"), "activity_id": activity,
            "activity_title": title, "session_id": None, "participant_id": participant,
            "participant_kind": "student", "institution_id": None, "team_id": None, "status": status,
            "queue_position": extra.pop("queue_position", None), "offer_expires_at": None, "version": version,
            **extra}


def activity(activity_id: str, *, status: str = "cancelled", organiser: str = "inst-org", version: int = 5):
    """An activity payload as the events service publishes it."""
    return {"id": activity_id, "kind": "job_fair", "title_zh": "2026 集成电路产教融合专场招聘会",
            "organiser_id": organiser, "starts_at": "2026-05-20T06:00:00+00:00",
            "ends_at": "2026-05-20T09:00:00+00:00", "status": status, "version": version}


def match(match_id: str, *, status: str = "proposed", a: str = "inst-a", b: str = "inst-b", version: int = 1):
    """A match payload as the matching service publishes it."""
    return {"id": match_id, "opportunity_id": "opp-1", "opportunity_title": "智能制造现代产业学院共建",
            "from_institution_id": a, "to_institution_id": b, "status": status, "outcomes": None,
            "version": version}


def contact(institution: str, *, email: str | None = "wang@example.cn", phone: str | None = "13800001234",
            version: int = 1):
    """A registry.contact.v1 payload."""
    return {"institution_id": institution, "contact_name": "王经理", "contact_email": email,
            "contact_phone": phone, "version": version}


def certification(cert_id: str, institution: str, *, status: str, version: int = 1):
    """A registry.certification.v1 payload."""
    return {"id": cert_id, "institution_id": institution, "enterprise_name": "上海临港智造有限公司",
            "batch_id": "b-2026-1", "batch_name": "2026 年第一批", "year": 2026, "status": status,
            "is_certified": status == "certified", "evaluation_result": None, "version": version,
            "updated_at": "2026-05-01T00:00:00+00:00"}
