"""Bearer tokens: only well-signed, unexpired tokens for this platform's audience are accepted."""

from __future__ import annotations

import time

import jwt
import pytest

from common.auth import Principal, TokenVerifier, mint_token
from common.errors import Unauthorized

pytestmark = pytest.mark.unit

SECRET = "unit-test-secret-that-is-long-enough!!"
verifier = TokenVerifier(secret=SECRET, algorithms=["HS256"], audience="cjrh-platform")


def test_a_valid_token_gives_the_callers_roles_and_institution():
    p = verifier.verify(mint_token(secret=SECRET, sub="u1", roles=["institution_admin"], institution_id="i1"))
    assert p == Principal(sub="u1", roles=frozenset({"institution_admin"}), institution_id="i1")
    assert p.acts_for("i1") and not p.acts_for("i2") and not p.is_office


def test_the_office_acts_for_every_institution():
    p = verifier.verify(mint_token(secret=SECRET, sub="o", roles=["office_admin"]))
    assert p.acts_for("anything")


def test_a_member_acts_for_no_institution_even_its_own():
    p = verifier.verify(mint_token(secret=SECRET, sub="m", roles=["member"], institution_id="i1"))
    assert not p.acts_for("i1")


def _claims(**over):
    now = int(time.time())
    # Built at collection time, so it must outlive the whole test run.
    return {"sub": "u", "roles": ["office_admin"], "aud": "cjrh-platform", "iat": now, "exp": now + 86400, **over}


@pytest.mark.parametrize("token, reason", [
    (jwt.encode(_claims(), key=None, algorithm="none"), "algorithm"),
    (jwt.encode(_claims(), "another-secret-of-sufficient-length!!", algorithm="HS256"), "Signature"),
    (jwt.encode(_claims(exp=int(time.time()) - 3600), SECRET, algorithm="HS256"), "expired"),
    (jwt.encode(_claims(aud="another-platform"), SECRET, algorithm="HS256"), "audience"),
    (jwt.encode({k: v for k, v in _claims().items() if k != "exp"}, SECRET, algorithm="HS256"), "exp"),
    (jwt.encode(_claims(roles="office_admin"), SECRET, algorithm="HS256"), "roles"),
    ("not-a-jwt", "invalid token"),
])
def test_unacceptable_tokens_are_refused_with_a_reason(token, reason):
    with pytest.raises(Unauthorized, match=reason):
        verifier.verify(token)


def test_a_remembered_token_is_refused_once_it_expires():
    v = TokenVerifier(secret=SECRET, algorithms=["HS256"], audience="cjrh-platform", leeway_seconds=0)
    tok = mint_token(secret=SECRET, sub="u", roles=["member"], ttl_seconds=1)
    assert v.verify(tok).sub == "u"
    assert v.verify(tok).sub == "u"  # remembered
    time.sleep(1.1)
    with pytest.raises(Unauthorized, match="expired"):
        v.verify(tok)
