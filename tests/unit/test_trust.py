"""Trust at the edge: rate limits that cannot be aimed at someone else, malformed tokens refused on every route, and
services that refuse to start in production with development trust settings."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from common.auth import OptionalPrincipal, TokenVerifier, mint_token
from common.config import DEV_JWT_SECRET, InsecureSettings, ServiceSettings
from common.errors import install_problem_handlers
from common.observability import HttpMiddleware
from notify.config import Settings as NotifySettings

pytestmark = pytest.mark.unit

SECRET = "unit-test-secret-that-is-long-enough!!"
REAL_SECRET = "a-production-secret-of-at-least-32-bytes-0123"


def _app(*, write_rate: float = 0, write_burst: int = 1, failed_rate: float = 0, failed_burst: int = 1) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    verifier = TokenVerifier(secret=SECRET, algorithms=["HS256"], audience="cjrh-platform")
    app.state.verifier = verifier
    app.add_middleware(HttpMiddleware, service="unit", max_body_bytes=1000, verifier=verifier,
                       write_rate_per_second=write_rate, write_burst=write_burst,
                       failed_auth_per_second=failed_rate, failed_auth_burst=failed_burst)

    @app.post("/things")
    async def create(caller: OptionalPrincipal):
        return {"sub": caller.sub if caller else None}

    @app.get("/things")
    async def read(caller: OptionalPrincipal):
        return {"sub": caller.sub if caller else None}

    @app.get("/public")
    async def public():
        return {"ok": True}

    return app


def _bearer(sub: str, roles=("member",), secret: str = SECRET, **kw) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(secret=secret, sub=sub, roles=list(roles), **kw)}"}


def _client(app: FastAPI, ip: str = "10.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 1234)), base_url="http://u")


async def test_forged_tokens_carrying_a_victims_subject_do_not_spend_the_victims_write_budget():
    app = _app(write_rate=1, write_burst=3, failed_rate=1, failed_burst=1000)
    forged = _bearer("victim", secret="an-attackers-own-secret-of-32-bytes!!")
    async with _client(app, "10.6.6.6") as attacker, _client(app, "10.0.0.2") as victim:
        codes = {(await attacker.post("/things", headers=forged)).status_code for _ in range(20)}
        assert codes == {401}
        mine = _bearer("victim")
        assert [(await victim.post("/things", headers=mine)).status_code for _ in range(4)] == [200, 200, 200, 429]


async def test_failed_authentication_is_limited_per_client_address_and_spares_other_addresses():
    app = _app(failed_rate=1, failed_burst=3)
    bad = {"Authorization": "Bearer abc.def.ghi"}
    async with _client(app, "10.6.6.6") as attacker, _client(app, "10.0.0.2") as neighbour:
        codes = [(await attacker.get("/things", headers=bad)).status_code for _ in range(5)]
        assert codes == [401, 401, 401, 429, 429]
        r = await attacker.get("/things", headers=bad)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "failed authentication" in r.json()["detail"] and int(r.headers["retry-after"]) >= 1
        assert (await attacker.get("/things", headers=_bearer("honest"))).json() == {"sub": "honest"}
        assert (await neighbour.get("/things", headers=bad)).status_code == 401


async def test_verified_writers_are_limited_by_their_own_principal_not_their_address():
    app = _app(write_rate=1, write_burst=2)
    async with _client(app, "10.0.0.9") as shared:
        a, b = _bearer("a"), _bearer("b")
        assert [(await shared.post("/things", headers=a)).status_code for _ in range(3)] == [200, 200, 429]
        assert (await shared.post("/things", headers=b)).status_code == 200


@pytest.mark.parametrize("claims, reason", [
    ({"roles": []}, "no role"),
    ({"roles": ["superuser"]}, "unknown role"),
    ({"roles": ["member", "root"]}, "unknown role"),
    ({"roles": ["institution_admin"]}, "institution_id"),
])
async def test_malformed_tokens_are_refused_with_401_on_reads_writes_and_public_routes(claims, reason):
    app = _app()
    headers = _bearer("m", **claims)
    async with _client(app) as c:
        for method, path in (("GET", "/things"), ("POST", "/things"), ("GET", "/public")):
            r = await c.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, r.text)
            assert reason in r.json()["detail"]


async def test_a_well_formed_institution_admin_token_is_accepted():
    async with _client(_app()) as c:
        r = await c.get("/things", headers=_bearer("ia", roles=["institution_admin"], institution_id="i1"))
        assert r.json() == {"sub": "ia"}


# --- settings outside development mode -----------------------------------------------------------------------------

def _production(**kw) -> ServiceSettings:
    return ServiceSettings(dev_mode=False, **kw)


def test_outside_development_mode_a_service_refuses_to_start_without_an_issuer_audience_and_real_key():
    with pytest.raises(ValueError, match="JWT_ISSUER") as err:
        _production()
    assert "JWT_AUDIENCE" in str(err.value) and "development secret" in str(err.value)
    with pytest.raises(ValueError, match="JWT_ISSUER"):
        _production(jwt_audience="cjrh-platform", jwt_secret=REAL_SECRET)
    with pytest.raises(ValueError, match="JWT_AUDIENCE"):
        _production(jwt_issuer="https://id.example", jwt_secret=REAL_SECRET)


def test_the_development_secret_never_serves_production_even_beside_a_jwks_url():
    with pytest.raises(ValueError, match="public development secret"):
        _production(jwt_issuer="https://id.example", jwt_audience="a", jwt_secret=DEV_JWT_SECRET)
    with pytest.raises(ValueError, match="public development secret"):
        _production(jwt_issuer="https://id.example", jwt_audience="a", jwks_url="https://id.example/jwks",
                    jwt_algorithms=["RS256", "HS256"])
    with pytest.raises(ValueError, match="shorter"):
        _production(jwt_issuer="https://id.example", jwt_audience="a", jwt_secret="short")


def test_production_settings_with_an_issuer_audience_and_a_key_start():
    s = _production(jwt_issuer="https://id.example", jwt_audience="cjrh-platform", jwt_secret=REAL_SECRET)
    assert s.production_problems() == []
    s = _production(jwt_issuer="https://id.example", jwt_audience="cjrh-platform", jwks_url="https://id.example/jwks",
                    jwt_algorithms=["RS256"])
    assert s.production_problems() == []


def test_development_mode_admits_the_development_defaults():
    s = ServiceSettings(dev_mode=True)
    assert s.jwt_secret == DEV_JWT_SECRET and s.jwt_audience == "cjrh-platform" and s.jwt_issuer is None


def test_the_development_sms_key_never_serves_production():
    base = {"dev_mode": False, "jwt_issuer": "https://id.example", "jwt_audience": "a", "jwt_secret": REAL_SECRET}
    with pytest.raises(ValueError, match="NOTIFY_SMS_API_KEY"):
        NotifySettings(**base, sms_url="https://sms.example/send")
    assert NotifySettings(**base, sms_url="https://sms.example/send", sms_api_key="k-from-a-secret").sms_api_key
    assert NotifySettings(**base).sms_url is None  # no provider: the key is never sent


def test_insecure_settings_is_a_value_error():
    assert issubclass(InsecureSettings, ValueError)


def test_a_foreign_issuer_is_refused_once_an_issuer_is_configured():
    from common.errors import Unauthorized

    v = TokenVerifier(secret=REAL_SECRET, algorithms=["HS256"], audience="cjrh-platform", issuer="https://id.example")
    assert v.verify(mint_token(secret=REAL_SECRET, sub="u", roles=["member"], issuer="https://id.example")).sub == "u"
    with pytest.raises(Unauthorized, match="issuer"):
        v.verify(mint_token(secret=REAL_SECRET, sub="u", roles=["member"], issuer="https://evil.example"))
    with pytest.raises(Unauthorized, match="iss"):
        v.verify(mint_token(secret=REAL_SECRET, sub="u", roles=["member"]))


async def test_an_unreachable_identity_provider_is_503_not_a_failed_authentication():
    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = pyjwt.encode({"sub": "u", "roles": ["member"], "aud": "cjrh-platform", "exp": 2_000_000_000}, key,
                         algorithm="RS256", headers={"kid": "k1"})
    app = FastAPI()
    install_problem_handlers(app)
    verifier = TokenVerifier(secret=None, algorithms=["RS256"], audience="cjrh-platform",
                             jwks_url="http://127.0.0.1:9/jwks.json")  # nothing listens on the discard port
    app.add_middleware(HttpMiddleware, service="unit", max_body_bytes=1000, verifier=verifier,
                       failed_auth_per_second=1, failed_auth_burst=1)

    @app.get("/things")
    async def read():
        return {}

    async with _client(app) as c:
        for _ in range(3):  # never counted against the address
            r = await c.get("/things", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 503 and r.headers["content-type"].startswith("application/problem+json")
            assert r.headers["retry-after"] == "5"
