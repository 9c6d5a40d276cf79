"""Authentication (bearer JWTs: HS256 for development, RS256 via JWKS for an OpenID provider) and authorisation."""

from __future__ import annotations

import argparse
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from common.errors import Forbidden, IdentityProviderUnavailable, Unauthorized


class Role(StrEnum):
    """The platform's roles."""

    OFFICE_ADMIN = "office_admin"
    INSTITUTION_ADMIN = "institution_admin"
    JUDGE = "judge"
    MEMBER = "member"
    INTEGRATION = "integration"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: subject, roles and (for institution-bound roles) their institution."""

    sub: str
    roles: frozenset[str] = field(default_factory=frozenset)
    institution_id: str | None = None
    name: str | None = None

    def has(self, *roles: Role | str) -> bool:
        """Whether the caller holds any of `roles`."""
        return any(str(r) in self.roles for r in roles)

    @property
    def is_office(self) -> bool:
        """Office administrators may act on every institution."""
        return Role.OFFICE_ADMIN in self.roles

    def acts_for(self, institution_id: str | None) -> bool:
        """Whether the caller may act on behalf of `institution_id` (the office may act for all)."""
        if self.is_office:
            return True
        return institution_id is not None and self.institution_id == institution_id and self.has(
            Role.INSTITUTION_ADMIN, Role.INTEGRATION,
        )


class TokenVerifier:
    """Verifies bearer tokens against a shared secret (HS256) or an OpenID provider's JWKS (RS256)."""

    def __init__(
        self, *, secret: str | None, algorithms: list[str], audience: str | None, issuer: str | None = None,
        jwks_url: str | None = None, leeway_seconds: int = 30,
    ) -> None:
        self.secret = secret
        self.leeway = leeway_seconds
        self.algorithms = [a for a in algorithms if a.lower() != "none"]
        self.audience = audience
        self.issuer = issuer
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=600) if jwks_url else None
        self.cache_size = 10_000
        self._accepted: dict[str, tuple[Principal, float]] = {}  # token -> (caller, expiry): skips re-verifying

    def verify(self, token: str) -> Principal:
        """Check a token (remembering accepted ones until they expire); raise Unauthorized with the reason if not."""
        hit = self._accepted.get(token)
        if hit is not None and hit[1] > time.time():
            return hit[0]
        principal, exp = self._verify(token)
        if len(self._accepted) >= self.cache_size:
            self._accepted.clear()
        self._accepted[token] = (principal, exp)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in self.algorithms:
                raise Unauthorized(f"token algorithm {header.get('alg')!r} is not accepted")
            key = self._jwks.get_signing_key_from_jwt(token).key if self._jwks and header["alg"].startswith(
                ("RS", "ES", "PS")) else self.secret
            claims = jwt.decode(
                token, key=key, algorithms=self.algorithms, audience=self.audience, issuer=self.issuer,
                options={"require": ["sub", "exp"], "verify_aud": self.audience is not None},
                leeway=self.leeway,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthorized("token audience is not this platform") from exc
        except jwt.PyJWKClientConnectionError as exc:
            raise IdentityProviderUnavailable(
                "the identity provider's signing keys cannot be fetched; retry shortly", retry_after=5) from exc
        except jwt.PyJWKClientError as exc:  # e.g. no key with the token's kid
            raise Unauthorized(f"invalid token: {exc}") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        roles = claims.get("roles")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise Unauthorized("claim 'roles' must be a list of strings")
        inst = claims.get("institution_id")
        malformed = malformed_claims(roles, inst)
        if malformed:
            raise Unauthorized(f"malformed token: {malformed}")
        principal = Principal(
            sub=str(claims["sub"]), roles=frozenset(roles), institution_id=str(inst) if inst else None,
            name=claims.get("name"),
        )
        return principal, float(claims["exp"])


KNOWN_ROLES = frozenset(r.value for r in Role)
# Roles that only make sense on behalf of one institution: a token carrying one without `institution_id` is malformed.
INSTITUTION_BOUND_ROLES = frozenset({Role.INSTITUTION_ADMIN.value})


def malformed_claims(roles: list[str], institution_id: object) -> str | None:
    """Why a token's roles and institution cannot describe a caller (None when they can): no role, an unknown role, or
    an institution-bound role without the institution."""
    if not roles:
        return "it carries no role"
    unknown = sorted(set(roles) - KNOWN_ROLES)
    if unknown:
        return f"unknown role(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(KNOWN_ROLES))}"
    bound = sorted(INSTITUTION_BOUND_ROLES & set(roles))
    if bound and not institution_id:
        return f"role {bound[0]!r} needs an 'institution_id' claim"
    return None


def mint_token(
    *, secret: str, sub: str, roles: list[str], institution_id: str | None = None, audience: str = "cjrh-platform",
    ttl_seconds: int = 8 * 3600, name: str | None = None, issuer: str | None = None,
) -> str:
    """Issue an HS256 development token (never used in production, where an OpenID provider issues tokens)."""
    now = int(time.time())
    claims = {
        "sub": sub, "roles": roles, "aud": audience, "iat": now, "exp": now + ttl_seconds, "jti": str(uuid.uuid4()),
    }
    if issuer:
        claims["iss"] = issuer
    if institution_id:
        claims["institution_id"] = institution_id
    if name:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm="HS256")


VERIFIED = "cjrh.verified"  # ASGI scope key: (token, Principal) once HttpMiddleware has verified the token
_bearer = HTTPBearer(auto_error=False, description="A JWT with claims sub, roles, institution_id")


def _verifier(request: Request) -> TokenVerifier:
    return request.app.state.verifier


# Each dependency below reads the bearer credentials itself instead of stacking on one another: FastAPI resolves every
# dependency node per request, and a flat graph is measurably cheaper on the hot paths.
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _verified(request: Request, token: str) -> Principal:
    """The caller a token names, reusing the verdict HttpMiddleware reached on the same token for this request."""
    seen = request.scope.get(VERIFIED)
    if seen is not None and seen[0] == token:
        return seen[1]
    return _verifier(request).verify(token)


def _authenticated(request: Request, creds: HTTPAuthorizationCredentials | None) -> Principal:
    if creds is None:
        raise Unauthorized("this operation needs a bearer token")
    return _verified(request, creds.credentials)


async def optional_principal(request: Request, creds: Credentials) -> Principal | None:
    """The caller if a bearer token was sent (it must then be valid), else None for anonymous reads."""
    if creds is None:
        return None
    return _verified(request, creds.credentials)


async def current_principal(request: Request, creds: Credentials) -> Principal:
    """The authenticated caller; 401 when no token was sent."""
    return _authenticated(request, creds)


current_principal.authenticates = True  # read by `security_of`


def require_roles(*roles: Role):
    """A dependency that admits only authenticated callers holding one of `roles`."""
    needed = ", ".join(str(r) for r in roles)

    async def dep(request: Request, creds: Credentials) -> Principal:
        principal = _authenticated(request, creds)
        if not principal.has(*roles):
            raise Forbidden(f"this operation needs one of the roles: {needed}")
        return principal

    dep.authenticates = True
    dep.required_roles = tuple(str(r) for r in roles)  # read by the app factory to document each route's roles
    return dep


def security_of(dependant) -> tuple[bool, set[str]]:
    """Whether a route needs an authenticated caller, and which roles its dependencies demand (empty: any role)."""
    authenticated, roles = False, set()
    stack = list(dependant.dependencies)
    while stack:
        dep = stack.pop()
        if getattr(dep.call, "authenticates", False):
            authenticated = True
        if getattr(dep.call, "required_roles", None):
            roles.update(dep.call.required_roles)
        stack.extend(dep.dependencies)
    return authenticated, roles


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]


def main() -> None:
    """`python -m common.auth --role office_admin [--institution ID]`: print a development token on the last line."""
    from pydantic_settings import BaseSettings

    from common.config import ServiceSettings

    parser = argparse.ArgumentParser(description="Print a development JWT (HS256) on its last line.")
    parser.add_argument("--role", action="append", required=True, choices=[r.value for r in Role])
    parser.add_argument("--institution", default=None)
    parser.add_argument("--sub", default=None)
    parser.add_argument("--ttl", type=int, default=8 * 3600)
    args = parser.parse_args()
    if (why := malformed_claims(args.role, args.institution)) is not None:
        parser.error(f"the services would refuse this token: {why} (add --institution ID)")
    settings: BaseSettings = ServiceSettings()
    print(mint_token(
        secret=settings.jwt_secret, sub=args.sub or f"dev-{uuid.uuid4().hex[:8]}", roles=args.role,
        institution_id=args.institution, audience=settings.jwt_audience, ttl_seconds=args.ttl,
        issuer=settings.jwt_issuer,
    ))


if __name__ == "__main__":
    main()
