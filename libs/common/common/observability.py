"""JSON logs carrying correlation and event ids, and the HTTP metrics / correlation-id / body-size middleware."""

from __future__ import annotations

import logging
import math
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common import tracing
from common.auth import VERIFIED, TokenVerifier
from common.context import HEAD_REQUEST, correlation_id_var, event_id_var
from common.errors import DomainError, problem
from common.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger("common.observability")
CLOSERS = "cjrh.closers"  # the ASGI scope key of a request's resources to close when it is over


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id_var.get() or None
        record.event_id = event_id_var.get() or None
        record.trace_id, record.span_id = tracing.log_ids()
        return True


def iso_time(record: logging.LogRecord) -> str:
    """When a record was made, in ISO 8601 UTC with its offset and milliseconds (2026-12-01T15:46:37.123+00:00)."""
    return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")


class _JsonLines(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_time(record)


class _TextLines(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_time(record)


# uvicorn configures these with handlers of its own that print plain text and do not propagate; the server's lines
# (startup, shutdown, errors, access) go through the platform's handler like every other log line instead.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def configure_logging(*, service: str, level: str = "INFO", json_logs: bool = True) -> None:
    """Route all logs to stdout, uvicorn's included, as JSON lines (service, correlation_id, event_id, and
    trace_id/span_id while a span is active) unless json_logs is off."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_ContextFilter())
    if json_logs:
        handler.setFormatter(_JsonLines(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s %(event_id)s %(trace_id)s %(span_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
        ))
    else:
        handler.setFormatter(_TextLines(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_cjrh", False):
            root.removeHandler(h)
    handler._cjrh = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Client libraries log every connection and request at INFO: noise per webhook call (and per request of any
    # process that drives the services in-process, as benchmarks do); their warnings and errors still come through.
    for chatty in ("aiokafka", "httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    for name in UVICORN_LOGGERS:
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class WriteRateLimiter:
    """A token bucket per caller for write requests: `rate` per second sustained, `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, last refill)

    def retry_after(self, caller: str, now: float | None = None) -> float:
        """0 when the caller may write now (and one token is taken), else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(caller, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) > 50_000:
                self._buckets.clear()
            self._buckets[caller] = (tokens - 1.0, now)
            return 0.0
        self._buckets[caller] = (tokens, now)
        return (1.0 - tokens) / self.rate


def bearer_token(headers: dict[bytes, bytes]) -> str | None:
    """The bearer token of a request's Authorization header, if it has one."""
    auth = headers.get(b"authorization", b"")
    if auth[:7].lower() != b"bearer ":
        return None
    return auth[7:].strip().decode("latin-1") or None


def client_address(scope: Scope) -> str:
    """The client's address as the server saw it (behind a proxy, the one uvicorn's --proxy-headers trusted)."""
    client = scope.get("client")
    return client[0] if client else "unknown"


class HttpMiddleware:
    """Pure-ASGI middleware: correlation id, request metrics by route, body-size limit (413), write rate limit per
    verified caller and failed-authentication limit per client address (429)."""

    def __init__(self, app: ASGIApp, *, service: str, max_body_bytes: int, write_rate_per_second: float = 0.0,
                 write_burst: int = 1, verifier: TokenVerifier | None = None,
                 failed_auth_per_second: float = 0.0, failed_auth_burst: int = 1) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.verifier = verifier
        self.limiter = WriteRateLimiter(write_rate_per_second, write_burst)
        self.failed_auth = WriteRateLimiter(failed_auth_per_second, failed_auth_burst)
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # labelled metrics, looked up once each

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        cid = (headers.get(b"x-correlation-id") or b"").decode("latin-1")[:100] or uuid.uuid4().hex
        scope[CLOSERS] = []
        method = scope.get("method", "")
        head = method == "HEAD"
        if head:  # HEAD is GET without the body (RFC 9110 9.3.2), for every GET route
            scope["method"] = "GET"
            scope[HEAD_REQUEST] = True
        token = correlation_id_var.set(cid)
        status = {"code": 500}
        start = time.perf_counter()

        async def respond(message: Message) -> None:
            # Every response leaves through here, the app's and this middleware's own refusals alike: it carries the
            # correlation id, and a HEAD response has no body (RFC 9110 9.3.2) whoever wrote it.
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-correlation-id", cid_bytes)]}
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        cid_bytes = cid.encode("latin-1")
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            resp = problem(413, f"request body is {int(declared)} bytes; the limit is {self.max_body_bytes}",
                           slug="payload-too-large", title="Payload too large")
            await resp(scope, receive, respond)
            self._observe(scope, method, 413, start)
            correlation_id_var.reset(token)
            return

        refusal = self._admit(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, respond)
            self._observe(scope, method, refusal.status_code, start)
            correlation_id_var.reset(token)
            return

        received = 0
        limit = self.max_body_bytes
        overflowed = False
        started = False

        async def limited_receive() -> Message:
            # Counts what arrives, so a body without Content-Length (Transfer-Encoding: chunked) meets the same limit.
            nonlocal received, overflowed
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    overflowed = True
                    raise _TooLarge()
            return msg

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if overflowed and not started:
                # The app may have caught the overflow as an unreadable body (FastAPI answers 400 "error parsing the
                # body"); whatever it answers is replaced by the 413 below.
                return
            if message["type"] == "http.response.start":
                started = True
            await respond(message)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except _TooLarge:
            pass
        finally:
            try:
                if overflowed and not started:
                    resp = problem(413, f"request body exceeds the limit of {limit} bytes", slug="payload-too-large",
                                   title="Payload too large", headers={"Connection": "close"})
                    await resp(scope, receive, respond)
            finally:
                await _close_all(scope[CLOSERS])
                self._observe(scope, method, status["code"], start)
                correlation_id_var.reset(token)

    def _admit(self, scope: Scope, headers: dict[bytes, bytes]):
        """A refusal (401 or 429) when the request may not proceed, else None. A bearer token is verified here, before
        anything in it is trusted, on every route: a token that fails is answered 401 (a token that is sent must be
        valid) and counted against the client address in a bucket of its own (429 once it is empty), so forged tokens
        naming someone else never spend that someone's budget. Writes are counted against the verified principal
        (anonymous writes against the address). The route's authentication dependency reuses the verdict."""
        bearer = bearer_token(headers) if self.verifier is not None else None
        principal = None
        if bearer is not None:
            try:
                principal = self.verifier.verify(bearer)
            except DomainError as exc:
                if exc.status != 401:  # the identity provider is away: not the caller's failure
                    return problem(exc.status, exc.detail, slug=exc.slug, title=exc.title,
                                   headers={"Retry-After": "5"})
                wait = self.failed_auth.retry_after(f"ip:{client_address(scope)}")
                if wait > 0:
                    return _too_many(wait, "failed authentications from this address")
                return problem(exc.status, exc.detail, slug=exc.slug, title=exc.title, instance=scope.get("path"))
            scope[VERIFIED] = (bearer, principal)
        if scope.get("method") in WRITE_METHODS:
            caller = f"sub:{principal.sub}" if principal is not None else f"ip:{client_address(scope)}"
            wait = self.limiter.retry_after(caller)
            if wait > 0:
                return _too_many(wait, "writes from this caller")
        return None

    def _observe(self, scope: Scope, method: str, code: int, start: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or ("unmatched" if code == 404 else "other")
        key = (method, path, code)  # routes x methods x status codes: a small, bounded set
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (HTTP_REQUESTS.labels(self.service, key[0], path, str(code)),
                                          HTTP_LATENCY.labels(self.service, key[0], path))
        series[0].inc()
        series[1].observe(time.perf_counter() - start)


def _too_many(wait: float, what: str):
    seconds = max(1, math.ceil(wait))
    return problem(429, f"too many {what}; retry in {seconds} s", slug="rate-limited", title="Too many requests",
                   headers={"Retry-After": str(seconds)})


async def _close_all(closers: list[Callable[[], Awaitable[Any]]]) -> None:
    for close in closers:
        try:
            await close()
        except Exception as exc:  # a connection lost with the database; the pool discards it
            log.debug("closing a request's resource failed: %r", exc)


def on_request_end(scope: Scope, close: Callable[[], Awaitable[Any]]) -> None:
    """Have `close` awaited when the request is over (response sent or failed); HttpMiddleware runs it."""
    try:
        scope[CLOSERS].append(close)
    except KeyError:
        raise RuntimeError("request-scoped resources need HttpMiddleware around the app") from None


class _TooLarge(Exception):
    pass
