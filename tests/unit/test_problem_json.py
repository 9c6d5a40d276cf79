"""Every error is RFC 9457 problem+json with a useful detail: domain errors, validation, 404, 405, 413."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError

from common.errors import InvalidTransition, install_problem_handlers
from common.observability import HttpMiddleware

pytestmark = pytest.mark.unit


class Body(BaseModel):
    name: str = Field(min_length=2)


class _Driver(Exception):
    """A driver error carrying its SQLSTATE, as asyncpg's do."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def make_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(HttpMiddleware, service="unit", max_body_bytes=1000)

    @app.post("/things")
    async def create(body: Body):
        return body

    @app.post("/things/{tid}/publish")
    async def publish(tid: str):
        raise InvalidTransition(f"thing {tid} is archived", allowed=[])

    @app.get("/boom")
    async def boom():
        raise RuntimeError("secret internals")

    @app.post("/deadlock")
    async def deadlock():
        raise DBAPIError("UPDATE ...", {}, _Driver("deadlock detected", "40P01"))

    return app


@pytest.fixture
async def client():
    transport = httpx.ASGITransport(app=make_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://unit") as c:
        yield c


def is_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["type"].startswith("https://") and body["title"] and body["detail"]
    return body


async def test_validation_errors_name_the_field(client):
    body = is_problem(await client.post("/things", json={"name": "x"}), 422)
    assert "body.name" in body["detail"] and body["errors"][0]["field"] == "body.name"


async def test_domain_errors_carry_their_extension_members(client):
    body = is_problem(await client.post("/things/t1/publish"), 409)
    assert body["allowed"] == [] and "archived" in body["detail"]


async def test_unknown_paths_and_methods_are_problems(client):
    assert "/nowhere" in is_problem(await client.get("/nowhere"), 404)["detail"]
    assert "DELETE" in is_problem(await client.delete("/things"), 405)["detail"]


async def test_oversized_bodies_get_413(client):
    body = is_problem(await client.post("/things", content=b"x" * 5000,
                                         headers={"content-type": "application/json"}), 413)
    assert "1000" in body["detail"]


async def test_unexpected_errors_do_not_leak_internals(client):
    body = is_problem(await client.get("/boom"), 500)
    assert "secret" not in body["detail"]


async def test_the_correlation_id_is_echoed(client):
    r = await client.get("/nowhere", headers={"x-correlation-id": "abc123"})
    assert r.headers["x-correlation-id"] == "abc123"


async def test_extension_members_never_replace_the_standard_ones():
    from common.errors import Conflict

    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/x")
    async def x():
        raise Conflict("clash", status="archived", allowed=["publish"])

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://u") as c:
        body = is_problem(await c.post("/x"), 409)
    assert body["status_"] == "archived" and body["allowed"] == ["publish"]


async def test_a_caller_writing_too_fast_gets_429_with_retry_after_and_others_are_unaffected():
    app = FastAPI()
    install_problem_handlers(app)
    from common.auth import TokenVerifier
    from tests.support.harness import AUDIENCE, SECRET, token

    verifier = TokenVerifier(secret=SECRET, algorithms=["HS256"], audience=AUDIENCE)
    app.add_middleware(HttpMiddleware, service="unit", max_body_bytes=1000, write_rate_per_second=1, write_burst=3,
                       verifier=verifier)

    @app.post("/things")
    async def create(body: Body):
        return body

    fast, calm = {"Authorization": f"Bearer {token('member', sub='fast')}"}, {
        "Authorization": f"Bearer {token('member', sub='calm')}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://u") as c:
        codes = [(await c.post("/things", json={"name": "ok"}, headers=fast)).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        r = await c.post("/things", json={"name": "ok"}, headers=fast)
        body = is_problem(r, 429)
        assert int(r.headers["retry-after"]) >= 1 and "retry" in body["detail"]
        assert (await c.post("/things", json={"name": "ok"}, headers=calm)).status_code == 200
        assert (await c.get("/nowhere", headers=fast)).status_code == 404, "reads are not limited"


async def test_a_deadlock_the_database_broke_is_a_409_to_retry_not_a_500(client):
    r = await client.post("/deadlock")
    body = is_problem(r, 409)
    assert "simultaneous change" in body["detail"] and r.headers["Retry-After"] == "1"


async def test_a_value_out_of_range_found_in_arithmetic_is_422_not_500():
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/far")
    async def far():
        from datetime import datetime, timedelta

        return datetime.max + timedelta(days=1)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://u") as c:
        body = is_problem(await c.get("/far"), 422)
        assert "out of range" in body["detail"]


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_an_instant_with_no_utc_form_is_a_validation_error(text):
    from pydantic import TypeAdapter, ValidationError

    from common.values import UtcInstant

    with pytest.raises(ValidationError, match="out of range"):
        TypeAdapter(UtcInstant).validate_python(text)
    utc = TypeAdapter(UtcInstant).validate_python("2026-01-01T08:00:00+08:00")
    assert utc.isoformat() == "2026-01-01T00:00:00+00:00"


async def _chunks(total: int, size: int = 256):
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


async def test_oversized_chunked_bodies_get_413_not_400(client):
    body = is_problem(await client.post("/things", content=_chunks(5000),
                                         headers={"content-type": "application/json"}), 413)
    assert "1000" in body["detail"]


async def test_chunked_bodies_within_the_limit_are_read_whole(client):
    async def small():
        yield b'{"name":'
        yield b' "ok"}'

    r = await client.post("/things", content=small(), headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json() == {"name": "ok"}


async def test_head_is_served_for_get_without_a_body(client):
    r = await client.head("/boom")
    assert r.status_code == 500 and r.content == b""
    r = await client.head("/nowhere")
    assert r.status_code == 404 and r.content == b""
    r = await client.head("/things")
    assert r.status_code == 405 and "HEAD" not in r.headers["allow"]


def test_every_422_the_services_send_fits_the_documented_schema():
    """A business rule's 422 (no `errors`) and a validation 422 (with them) both fit ValidationProblem."""
    import jsonschema

    from common.errors import FIELD_ERROR_SCHEMA, PROBLEM_SCHEMA, VALIDATION_PROBLEM_SCHEMA

    schemas = {"Problem": PROBLEM_SCHEMA, "FieldError": FIELD_ERROR_SCHEMA,
               "ValidationProblem": VALIDATION_PROBLEM_SCHEMA}
    document = {"components": {"schemas": schemas}, "$ref": "#/components/schemas/ValidationProblem"}
    rule = {"type": "https://platform.cjrh.sh.cn/problems/unprocessable", "title": "Unprocessable content",
            "status": 422, "detail": "cursor is not one this API issued", "instance": "/institutions"}
    validation = {**rule, "type": "https://platform.cjrh.sh.cn/problems/validation-error",
                  "errors": [{"field": "query.limit", "message": "too big", "type": "less_than_equal"}]}
    for body in (rule, validation):
        jsonschema.validate(body, document)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**validation, "errors": [{"field": 1}]}, document)
