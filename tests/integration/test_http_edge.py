"""The HTTP edge every service shares, as browsers and portal clients meet it: a body-size limit that also holds for
chunked bodies, HEAD for every GET, OPTIONS, and CORS for the configured origins only."""

from __future__ import annotations

import uuid

import pytest

import events.main
import matching.main
import notify.main
import registry.main
from events.config import Settings as EventsSettings
from matching.config import Settings as MatchingSettings
from notify.config import Settings as NotifySettings
from registry.config import Settings as RegistrySettings
from tests.support.harness import auth, fresh_database, run_service

pytestmark = pytest.mark.integration

SERVICES = [
    ("registry", registry.main.create_app, RegistrySettings),
    ("matching", matching.main.create_app, MatchingSettings),
    ("events", events.main.create_app, EventsSettings),
    ("notify", notify.main.create_app, NotifySettings),
]
PORTAL = "http://localhost:5173"
LIMIT = 64 * 1024


def _fill(path: str) -> str:
    return "/".join(str(uuid.uuid4()) if p.startswith("{") else p for p in path.split("/"))


async def _chunked(total: int, size: int = 16 * 1024):
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


def _is_problem(r, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


@pytest.mark.parametrize("name, create_app, settings_cls", SERVICES, ids=[s[0] for s in SERVICES])
async def test_the_shared_edge_of_every_service(broker, name, create_app, settings_cls):
    async with run_service(create_app, settings_cls, broker=broker, db_url=await fresh_database(name),
                           max_body_bytes=LIMIT, cors_origins=[PORTAL]) as svc:
        doc = (await svc.http.get("/openapi.json")).json()
        office = auth("office_admin")

        # An oversize body is 413 problem+json on every write that takes one, with or without Content-Length.
        writes = [(m, p) for p, ops in doc["paths"].items() for m, op in ops.items() if "requestBody" in op]
        assert writes
        for method, path in writes:
            url = _fill(path)
            declared = await svc.http.request(method.upper(), url, content=b"x" * (LIMIT + 1), headers=office)
            chunked = await svc.http.request(method.upper(), url, content=_chunked(5 * LIMIT),
                                             headers={**office, "content-type": "application/json"})
            for r in (declared, chunked):
                assert str(LIMIT) in _is_problem(r, 413)["detail"], (method, path)

        # HEAD answers what GET answers, without a body, for every GET operation.
        reads = [p for p, ops in doc["paths"].items() if "get" in ops]
        for path in reads:
            url = _fill(path)
            got, head = await svc.http.get(url, headers=office), await svc.http.head(url, headers=office)
            assert head.status_code == got.status_code, (path, head.status_code, got.status_code)
            assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"], path

        # ... refusals made before any route runs included: a forged token (401) and an oversize body (413) answer
        # HEAD without a body too, with the correlation id every response carries.
        url = _fill(reads[0])
        forged = {"authorization": "Bearer not.a.token", "x-correlation-id": "head-401"}
        got, head = await svc.http.get(url, headers=forged), await svc.http.head(url, headers=forged)
        assert got.status_code == head.status_code == 401 and got.content and head.content == b""
        assert head.headers["x-correlation-id"] == "head-401"
        big = {**office, "content-length": str(LIMIT + 1)}
        head = await svc.http.request("HEAD", url, headers=big)
        assert head.status_code == 413 and head.content == b"" and head.headers["x-correlation-id"]

        # OPTIONS names what a path allows; a method a path lacks is 405 with the same list.
        r = await svc.http.options("/healthz")
        assert r.status_code == 204 and set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
        write_path = writes[0][1]
        assert "OPTIONS" in (await svc.http.options(_fill(write_path))).headers["allow"]
        _is_problem(await svc.http.options("/no-such-thing"), 404)

        # CORS: the configured portal origin may call, with the headers it needs; others are refused.
        preflight = await svc.http.options(_fill(write_path), headers={
            "Origin": PORTAL, "Access-Control-Request-Method": writes[0][0].upper(),
            "Access-Control-Request-Headers": "authorization, content-type, if-match"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == PORTAL
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        simple = await svc.http.get("/healthz", headers={"Origin": PORTAL})
        assert simple.headers["access-control-allow-origin"] == PORTAL
        assert "etag" in simple.headers["access-control-expose-headers"].lower()
        refused = await svc.http.options(_fill(write_path), headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert "evil.example" in _is_problem(refused, 403)["detail"]
        other = await svc.http.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
