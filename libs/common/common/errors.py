"""Domain errors as values, mapped once to RFC 9457 problem+json responses at the edge."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.db import is_unavailable, sqlstate

log = logging.getLogger("common.errors")

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://platform.cjrh.sh.cn/problems/"


class DomainError(Exception):
    """Base of every error a use case may raise on purpose; carries status, a stable slug and extension members."""

    status: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class NotFound(DomainError):
    """The resource does not exist (or is not visible to the caller)."""

    status, slug, title = 404, "not-found", "Not found"


class Conflict(DomainError):
    """The request conflicts with the current state (duplicate, invalid transition)."""

    status, slug, title = 409, "conflict", "Conflict"


class InvalidTransition(Conflict):
    """A state machine refused a transition; `allowed` names the ones it would accept."""

    slug, title = "invalid-transition", "Invalid state transition"


class PreconditionFailed(DomainError):
    """If-Match did not match the current version."""

    status, slug, title = 412, "precondition-failed", "Precondition failed"


class PreconditionRequired(DomainError):
    """A write to a versioned resource must carry If-Match."""

    status, slug, title = 428, "precondition-required", "Precondition required"


class Unprocessable(DomainError):
    """The request is well-formed but violates a business rule."""

    status, slug, title = 422, "unprocessable", "Unprocessable content"


class Unauthorized(DomainError):
    """No valid credentials."""

    status, slug, title = 401, "unauthorized", "Unauthorized"


class Forbidden(DomainError):
    """Valid credentials without the right role or scope."""

    status, slug, title = 403, "forbidden", "Forbidden"


class IdentityProviderUnavailable(DomainError):
    """The OpenID provider's signing keys could not be fetched: the token can be neither accepted nor refused."""

    status, slug, title = 503, "identity-provider-unavailable", "Identity provider unavailable"


class PayloadTooLarge(DomainError):
    """The request body is over the configured limit."""

    status, slug, title = 413, "payload-too-large", "Payload too large"


def problem(
    status: int, detail: str, *, slug: str | None = None, title: str | None = None, instance: str | None = None,
    headers: dict[str, str] | None = None, extensions: dict[str, Any] | None = None, **more: Any,
) -> JSONResponse:
    """Build a problem+json response."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or phrase.lower().replace(" ", "-")),
        "title": title or phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    for name, value in {**(extensions or {}), **more}.items():  # never overwrite the standard members
        body[name if name not in body else f"{name}_"] = value
    hdrs = dict(headers or {})
    if status == 401:
        hdrs.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=hdrs)


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error the app can produce a problem+json response, including validation, 404 and 405."""

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError):
        return problem(exc.status, exc.detail, slug=exc.slug, title=exc.title, instance=request.url.path,
                       extensions=exc.extensions)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            errors.append({"field": ".".join(loc), "message": err.get("msg"), "type": err.get("type")})
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem(422, f"request validation failed: {summary}", slug="validation-error",
                       title="Validation error", instance=request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no resource at {request.url.path}"
        elif exc.status_code == 405:
            detail = f"method {request.method} is not allowed on {request.url.path}"
        return problem(exc.status_code, detail, instance=request.url.path, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        if is_unavailable(exc):
            log.warning("database unavailable: %r", exc)
            return problem(503, "the database is unavailable; retry shortly", slug="unavailable",
                           headers={"Retry-After": "2"}, instance=request.url.path)
        if isinstance(exc, OverflowError):  # a date or number no validator bounded, met in arithmetic or conversion
            log.info("a value was out of range: %r", exc)
            return problem(422, "a date or number in the request is out of range", slug="unprocessable",
                           title="Unprocessable content", instance=request.url.path)
        state = sqlstate(exc) or ""
        if isinstance(exc, DataError) or state.startswith("22"):
            log.info("database refused a value: %r", exc)
            return problem(422, "a value does not fit its field (too long or out of range)", slug="unprocessable",
                           title="Unprocessable content", instance=request.url.path)
        if state in ("40001", "40P01"):  # serialization failure, deadlock: a simultaneous change won
            log.info("transaction rolled back by the database: %r", exc)
            return problem(409, "a simultaneous change to the same records won; read them again and retry",
                           slug="conflict", title="Conflict", headers={"Retry-After": "1"},
                           instance=request.url.path)
        if isinstance(exc, IntegrityError) or state.startswith("23"):
            log.info("integrity error: %r", exc)
            return problem(409, "the change conflicts with existing data (a duplicate or a missing reference)",
                           slug="conflict", title="Conflict", instance=request.url.path)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "an unexpected error occurred; it has been logged", instance=request.url.path)
