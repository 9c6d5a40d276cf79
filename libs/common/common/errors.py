"""Domain errors as values, mapped once to RFC 9457 problem+json responses at the edge."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.context import HEAD_REQUEST
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


def request_method(request: Request) -> str:
    """The method the client sent (a HEAD request is served as GET; see common.observability)."""
    return "HEAD" if request.scope.get(HEAD_REQUEST) else request.method


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
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            detail = f"method {request_method(request)} is not allowed on {request.url.path}"
            allowed = [m.strip() for m in headers.get("Allow", "").split(",") if m.strip()]
            if "GET" in allowed:
                allowed.append("HEAD")
            headers["Allow"] = ", ".join(sorted(set(allowed) | {"OPTIONS"}))
        return problem(exc.status_code, detail, instance=request.url.path, headers=headers)

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
        log.exception("unhandled error on %s %s", request_method(request), request.url.path)
        return problem(500, "an unexpected error occurred; it has been logged", instance=request.url.path)


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem detail (application/problem+json); extension members such as `allowed`, "
                   "`errors` or `checks` may follow the standard ones.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri", "description": f"the problem type, {PROBLEM_BASE}<slug>"},
        "title": {"type": "string", "description": "a short summary of the problem type"},
        "status": {"type": "integer", "description": "the HTTP status code"},
        "detail": {"type": "string", "description": "what went wrong with this request"},
        "instance": {"type": "string", "description": "the path of the request"},
    },
    "additionalProperties": True,
}
FIELD_ERROR_SCHEMA: dict[str, Any] = {
    "title": "FieldError",
    "type": "object",
    "required": ["field", "message", "type"],
    "properties": {
        "field": {"type": "string", "description": "where the value was, e.g. `body.name` or `query.limit`"},
        "message": {"type": "string"},
        "type": {"type": "string", "description": "the validation error's kind, e.g. `string_too_short`"},
    },
}
VALIDATION_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "ValidationProblem",
    "description": "A 422 problem: `errors` names every field that failed validation (type validation-error); a "
                   "business rule's refusal (type unprocessable) has none.",
    "allOf": [
        {"$ref": "#/components/schemas/Problem"},
        {"type": "object",
         "properties": {"errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}}}},
    ],
}
# Problem types the shared edge sends by status, beside those of the DomainError subclasses in use.
EDGE_PROBLEM_TYPES: dict[int, set[str]] = {
    400: {"bad-request"}, 401: {"unauthorized"}, 403: {"forbidden"}, 404: {"not-found"},
    405: {"method-not-allowed"}, 409: {"conflict"}, 413: {"payload-too-large"},
    422: {"validation-error", "unprocessable"}, 429: {"rate-limited"}, 503: {"unavailable", "not-ready"},
}
WRITE_OPERATIONS = frozenset({"post", "put", "patch", "delete"})


def problem_types_by_status(package: str | None = None) -> dict[int, set[str]]:
    """The problem types (slugs) a service can send, by status: the edge's, and those of the DomainError subclasses
    defined in libs/common or in the service's own package."""
    found = {status: set(slugs) for status, slugs in EDGE_PROBLEM_TYPES.items()}
    owners = ("common.", f"{package}.") if package else ("common.",)
    pending = [DomainError]
    while pending:
        cls = pending.pop()
        if cls.__module__.startswith(owners):
            found.setdefault(cls.status, set()).add(cls.slug)
        pending.extend(cls.__subclasses__())
    return found


def _problem_response(status: int, types: dict[int, set[str]], description: str | None = None) -> dict[str, Any]:
    schema = "ValidationProblem" if status == 422 else "Problem"
    slugs = sorted(types.get(status, set()))
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    text = description if description and description not in {"Validation Error", "Successful Response"} else phrase
    return {
        "description": text + (" (problem types: " + ", ".join(slugs) + ")" if slugs else ""),
        "content": {PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        "x-problem-types": [PROBLEM_BASE + slug for slug in slugs],
    }


def document_problems(schema: dict[str, Any], *, package: str | None = None) -> dict[str, Any]:
    """Make every error response of an OpenAPI document application/problem+json with the shared Problem schema.

    Besides the errors an operation declares (FastAPI's 422 included), each documents those the shared edge sends:
    401 and 403 when it needs a token, 404 when its path names a resource, 413 when it takes a body, 429 for
    writes and 503 (database away) everywhere."""
    types = problem_types_by_status(package)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    components["FieldError"] = FIELD_ERROR_SCHEMA
    components["ValidationProblem"] = VALIDATION_PROBLEM_SCHEMA
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses = op["responses"]
            statuses = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
            statuses.add(503)
            if op.get("x-authenticated"):
                statuses |= {401, 403}
            if "{" in path:
                statuses.add(404)
            if "requestBody" in op:
                statuses |= {413, 422}
            if op.get("parameters"):
                statuses.add(422)
            if method in WRITE_OPERATIONS:
                statuses.add(429)
            for status in sorted(statuses):
                declared = responses.get(str(status), {})
                responses[str(status)] = {**declared, **_problem_response(status, types, declared.get("description"))}
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's, replaced by ValidationProblem
        if unused in components and f'"#/components/schemas/{unused}"'.encode() not in orjson.dumps(schema):
            del components[unused]
    return schema


def install_problem_openapi(app: FastAPI, *, package: str | None = None) -> None:
    """Have the app's OpenAPI document describe its errors as they are sent (see `document_problems`); `package`
    names the service's own package, whose DomainError types it documents."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(build(), package=package)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
