"""The authorisation matrix, generated from each service's OpenAPI document so no new write can escape it.

For every write operation of every service: anonymous callers get 401; forged, unsigned, expired, foreign-audience
and malformed (no role, unknown role, institution_admin without institution) tokens get 401, on every read as well;
callers whose role the operation does not admit get 403; nothing answers 5xx. A write that does not require
authentication fails the test unless it is listed in PUBLIC_WRITES with a reason.
"""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

import events.main
import matching.main
import notify.main
import registry.main
from common.auth import Role
from events.config import Settings as EventsSettings
from matching.config import Settings as MatchingSettings
from notify.config import Settings as NotifySettings
from registry.config import Settings as RegistrySettings
from tests.support.harness import AUDIENCE, SECRET, fresh_database, run_service, token

pytestmark = pytest.mark.integration

SERVICES = [
    ("registry", registry.main.create_app, RegistrySettings),
    ("matching", matching.main.create_app, MatchingSettings),
    ("events", events.main.create_app, EventsSettings),
    ("notify", notify.main.create_app, NotifySettings),
]
WRITE_METHODS = {"post", "put", "patch", "delete"}
PUBLIC_WRITES: dict[tuple[str, str, str], str] = {}  # (service, METHOD, path) -> why it may be anonymous


def _claims(**over) -> dict:
    now = int(time.time())
    return {"sub": "attacker", "roles": ["office_admin"], "aud": AUDIENCE, "iat": now, "exp": now + 600, **over}


BAD_TOKENS = {
    "alg none": jwt.encode(_claims(), key=None, algorithm="none"),
    "wrong signature": jwt.encode(_claims(), "not-the-platform-secret-at-all-32b!", algorithm="HS256"),
    "expired": jwt.encode(_claims(exp=int(time.time()) - 600), SECRET, algorithm="HS256"),
    "wrong audience": jwt.encode(_claims(aud="some-other-system"), SECRET, algorithm="HS256"),
    "garbage": "abc.def.ghi",
    # well signed, but no caller can be read from them (malformed: 401 on every route, reads included)
    "no roles": jwt.encode(_claims(roles=[]), SECRET, algorithm="HS256"),
    "unknown role": jwt.encode(_claims(roles=["superuser"]), SECRET, algorithm="HS256"),
    "institution_admin without institution": jwt.encode(_claims(roles=["institution_admin"]), SECRET,
                                                        algorithm="HS256"),
}


def _fill(path: str) -> str:
    out = []
    for part in path.split("/"):
        out.append(str(uuid.uuid4()) if part.startswith("{") else part)
    return "/".join(out)


@pytest.mark.parametrize("name, create_app, settings_cls", SERVICES, ids=[s[0] for s in SERVICES])
async def test_every_write_refuses_the_unauthenticated_and_the_wrong_roles(broker, name, create_app, settings_cls):
    async with run_service(create_app, settings_cls, broker=broker, db_url=await fresh_database(name)) as svc:
        spec = (await svc.http.get("/openapi.json")).json()
        cases, failures, writes = 0, [], 0
        for path, ops in spec["paths"].items():
            for method, op in ops.items():
                if method == "get":  # a token that is sent must be valid, on reads as well
                    for k, t in BAD_TOKENS.items():
                        cases += 1
                        r = await svc.http.get(_fill(path), headers={"Authorization": f"Bearer {t}"})
                        if r.status_code != 401:
                            failures.append(f"{(name, 'GET', path)} token: {k}: expected 401, got {r.status_code}")
                if method not in WRITE_METHODS:
                    continue
                writes += 1
                key = (name, method.upper(), path)
                if not op.get("x-authenticated"):
                    if key not in PUBLIC_WRITES:
                        failures.append(f"{key}: does not require authentication")
                    continue
                url = _fill(path)

                async def call(headers: dict, url=url, method=method):
                    return await svc.http.request(method.upper(), url, json={}, headers=headers)

                expectations = [("anonymous", {}, {401})]
                expectations += [(f"token: {k}", {"Authorization": f"Bearer {t}"}, {401})
                                 for k, t in BAD_TOKENS.items()]
                admitted = set(op.get("x-required-roles") or [])
                for role in Role:
                    hdr = {"Authorization": f"Bearer {token(role.value, institution=str(uuid.uuid4()))}"}
                    if admitted and role.value not in admitted:
                        expectations.append((f"role {role.value}", hdr, {403}))
                    else:
                        expectations.append((f"role {role.value}", hdr, None))  # any answer but 401 and 5xx
                for label, headers, expected in expectations:
                    cases += 1
                    r = await call(headers)
                    if r.status_code >= 500:
                        failures.append(f"{key} {label}: {r.status_code} {r.text[:200]}")
                    elif expected is not None and r.status_code not in expected:
                        failures.append(f"{key} {label}: expected {sorted(expected)}, got {r.status_code}")
                    elif expected is None and r.status_code == 401:
                        failures.append(f"{key} {label}: a valid token was refused")
                    if r.status_code >= 400 and not r.headers.get("content-type", "").startswith(
                            "application/problem+json"):
                        failures.append(f"{key} {label}: {r.status_code} is not problem+json")
        print(f"\n{name}: {writes} write operations, {cases} authorisation cases, {len(failures)} failures")
        assert writes > 0
        assert not failures, "\n".join(failures[:30])
