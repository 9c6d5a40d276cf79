"""Build a service's FastAPI app: lifespan (migrations, engine, producer, outbox relay, consumers), health, metrics."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Table, delete, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.middleware.cors import CORSMiddleware

from common import tracing
from common.auth import TokenVerifier, security_of
from common.config import ServiceSettings
from common.consumer import EventConsumer, Subscription
from common.db import create_engine, session_factory, utcnow
from common.errors import install_problem_handlers, install_problem_openapi, problem
from common.events import dead_letter_topic
from common.kafka import KafkaSecurity
from common.limits import MAX_RECORD_BYTES
from common.migrations import upgrade_async
from common.observability import HttpMiddleware, configure_logging, on_request_end
from common.outbox import WAKE, EventStager, OutboxRelay, producer_for
from common.provenance import topic_owners

log = logging.getLogger("common.service")


@dataclass
class ConsumerSpec:
    """A consumer group of the service: a name and the topics/handlers it subscribes to."""

    name: str
    subscriptions: list[Subscription]


@dataclass
class ServiceSpec:
    """Everything that makes one service: its settings, routes, tables, migrations, topics and consumers."""

    settings: ServiceSettings
    title: str
    description: str
    routers: list[APIRouter]
    outbox: Table
    processed: Table
    migrations: Path
    published_topics: list[str]
    consumers: list[ConsumerSpec] = field(default_factory=list)
    version: str = "0.1.0"
    on_startup: list[Callable] = field(default_factory=list)


class ServedUnder:
    """ASGI middleware for a service behind a proxy that strips `root_path`: requests look as they did at the proxy.

    It does what `uvicorn --root-path` does (and leaves a path that already carries the prefix as it is), so /docs,
    the OpenAPI `servers` and mounted assets name URLs under the prefix whatever server runs the app.
    """

    def __init__(self, app, *, root_path: str) -> None:
        self.app = app
        self.root_path = root_path

    async def __call__(self, scope, receive, send) -> None:
        """Give HTTP and WebSocket scopes the root path, and their path the prefix the proxy removed."""
        if scope["type"] in ("http", "websocket"):
            path = scope["path"]
            if not (path == self.root_path or path.startswith(self.root_path + "/")):
                path = self.root_path + path
            scope = {**scope, "root_path": self.root_path, "path": path}
        await self.app(scope, receive, send)


# How long stopping waits for the background tasks (consumers leave their groups meanwhile).
STOP_TASKS_SECONDS = 15.0

class Runtime:
    """The live resources of a running service, kept on `app.state.runtime`."""

    def __init__(self, spec: ServiceSpec) -> None:
        s = spec.settings
        self.spec = spec
        self.settings = s
        self.engine: AsyncEngine = create_engine(s.database_url)
        self.security = s.kafka_security  # every client below authenticates as the service's own principal
        self.producer: AIOKafkaProducer = producer_for(s.kafka_bootstrap_servers, client_id=s.service_name,
                                                       security=self.security)
        self.relay = OutboxRelay(
            engine=self.engine, table=spec.outbox, producer=self.producer, service=s.service_name,
            sweep_seconds=s.outbox_sweep_seconds, batch_size=s.outbox_batch_size, renew_producer=self.renew_producer,
        )
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(self.engine, **{WAKE: self.relay.wake})
        # Reads (GET/HEAD) run each statement on its own, without BEGIN and ROLLBACK around it: two round trips fewer
        # per request and the same view of the data, since READ COMMITTED gives every statement its own snapshot.
        self.read_sessions: async_sessionmaker[AsyncSession] = session_factory(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"))
        self.stager = EventStager(
            table=spec.outbox, source=s.event_source, type_prefix=s.event_type_prefix, service=s.service_name,
        )
        self.consumers = [
            EventConsumer(
                name=c.name, service=s.service_name, bootstrap=s.kafka_bootstrap_servers,
                subscriptions=c.subscriptions, sessions=self.sessions, processed=spec.processed,
                producer=self.producer, renew_producer=self.renew_producer, max_attempts=s.consumer_max_attempts,
                backoff_seconds=s.consumer_backoff_seconds, batch_size=s.consumer_batch_size,
                group_suffix=s.consumer_group_suffix, security=self.security,
                owners=topic_owners(s.event_source_base),
                stall_seconds=s.consumer_stall_seconds, dead_letter_timeout=s.consumer_dead_letter_timeout_seconds,
            )
            for c in spec.consumers
        ]
        self.producer_ready = asyncio.Event()
        self._renewing = asyncio.Lock()
        self.tasks: list[asyncio.Task] = []

    async def renew_producer(self) -> AIOKafkaProducer:
        """Replace the producer with a fresh one (see common.outbox.PRODUCER_FATAL); the relay and the consumers'
        dead-letter sends use the new one from then on."""
        async with self._renewing:
            old = self.producer
            new = producer_for(self.settings.kafka_bootstrap_servers, client_id=self.settings.service_name,
                               security=self.security)
            await new.start()
            self.producer = self.relay.producer = new
            for c in self.consumers:
                c.producer = new
            try:
                await asyncio.wait_for(old.stop(), timeout=5)
            except Exception:  # a broken producer may not stop cleanly; nothing in it is still wanted
                pass
            return new

    def topics(self) -> list[str]:
        """Every topic this service writes to (see `topics_for`)."""
        return topics_for(self.spec)

    async def _start_broker_side(self) -> None:
        """Create topics and start the producer, retrying while the broker is away (the API serves meanwhile)."""
        delay = 0.5
        while True:
            try:
                await ensure_topics(self.settings.kafka_bootstrap_servers, self.topics(),
                                    partitions=self.settings.topic_partitions,
                                    replication=self.settings.topic_replication, security=self.security)
                await self.producer.start()
                break
            except KafkaError as exc:
                log.warning("broker not reachable yet (%r); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.producer_ready.set()
        if self.settings.run_workers:
            self.tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
            if self.consumers:
                self.tasks.append(asyncio.create_task(self._prune_processed(), name="prune-processed"))
            for c in self.consumers:
                self.tasks.append(asyncio.create_task(c.run(), name=f"consumer-{c.name}"))

    async def prune_processed(self) -> int:
        """Forget processed event ids older than the retention (they can no longer be redelivered)."""
        cutoff = utcnow() - timedelta(days=self.settings.processed_retention_days)
        t = self.spec.processed
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(t).where(t.c.processed_at < cutoff))
        return result.rowcount or 0

    async def _prune_processed(self) -> None:
        while True:
            try:
                removed = await self.prune_processed()
                if removed:
                    log.info("pruned %d processed event ids", removed)
            except Exception as exc:  # the database may be away; try again next hour
                log.warning("pruning processed event ids failed: %r", exc)
            await asyncio.sleep(3600)

    async def start(self) -> None:
        """Run migrations, then bring up the broker side in the background."""
        if self.settings.run_migrations:
            await upgrade_async(self.spec.migrations, self.settings.database_url)
        for hook in self.spec.on_startup:
            await hook(self)
        self.tasks.append(asyncio.create_task(self._start_broker_side(), name="broker-side"))

    async def stop(self) -> None:
        """Stop consumers and relay (publishing what is pending if the broker is there), then the producer."""
        for c in self.consumers:
            c.stop()
        self.relay.stop()
        for t in self.tasks:
            if t.get_name() == "outbox-relay":
                continue
            t.cancel()
        relay = [t for t in self.tasks if t.get_name() == "outbox-relay"]
        if relay:
            try:
                await asyncio.wait_for(relay[0], timeout=5)
            except (TimeoutError, asyncio.CancelledError):
                relay[0].cancel()
        if self.tasks:  # bounded, so a stop always ends within the orchestrator's grace period
            _, pending = await asyncio.wait(self.tasks, timeout=STOP_TASKS_SECONDS)
            if pending:
                log.warning("stopping: %s did not finish within %.0f s; left behind",
                            ", ".join(sorted(t.get_name() for t in pending)), STOP_TASKS_SECONDS)
        if self.producer_ready.is_set():
            try:
                await asyncio.wait_for(self.producer.stop(), timeout=10)
            except Exception:  # a broker that vanished; the outbox keeps anything unsent
                pass
        await self.engine.dispose()

    async def ready(self) -> dict[str, str]:
        """Check the database and the broker; an empty problem list means ready."""
        problems = {}
        try:
            async with self.engine.connect() as conn:
                await asyncio.wait_for(conn.execute(text("SELECT 1")), timeout=2)
        except Exception as exc:
            problems["database"] = f"unreachable: {exc.__class__.__name__}"
        if not self.producer_ready.is_set():
            problems["broker"] = "not connected yet"
        else:
            try:
                await asyncio.wait_for(self.producer.client.fetch_all_metadata(), timeout=2)
            except Exception as exc:
                problems["broker"] = f"unreachable: {exc.__class__.__name__}"
        return problems

    def degraded(self) -> dict[str, str]:
        """What works but not well: consumers that made no progress for too long while records wait."""
        return {f"consumer {c.group_id}": why for c in self.consumers if (why := c.stall_detail()) is not None}


def topics_for(spec: ServiceSpec) -> list[str]:
    """Every topic a service writes to: what it publishes, what it consumes, and their dead-letter topics."""
    consumed = {sub.topic for c in spec.consumers for sub in c.subscriptions}
    return sorted(set(spec.published_topics) | consumed | {dead_letter_topic(t) for t in consumed})


async def ensure_topics(
    bootstrap: str, topics: list[str], *, partitions: int, security: KafkaSecurity, replication: int = 1,
) -> None:
    """Create topics explicitly (the broker does not auto-create), each taking records up to the platform's record
    limit whatever the broker's default; existing ones are left as they are.

    Under ACLs a service may not create topics (the topics job does, as the admin principal): it lists only what it
    may describe, and a missing topic fails with TopicAuthorizationFailedError, which the caller retries."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="topic-setup", **security.client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(t, num_partitions=partitions, replication_factor=replication,
                            topic_configs={"max.message.bytes": str(MAX_RECORD_BYTES)})
                   for t in topics if t not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def get_runtime(request: Request) -> Runtime:
    """The running service's resources (async: a plain `def` dependency would cost a thread hop per request)."""
    return request.app.state.runtime


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CORS_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "If-Match", "If-None-Match", "X-Correlation-Id",
                        "Accept-Language"]
CORS_RESPONSE_HEADERS = ["ETag", "Location", "Link", "Retry-After", "X-Correlation-Id", "Content-Disposition"]


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware, refusing a preflight with problem+json (403 naming what is not allowed)."""

    def preflight_response(self, request_headers) -> Response:
        """Answer a preflight; a refusal is a problem, as every other error is."""
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode("utf-8", "replace").removeprefix("Disallowed CORS ")
        origin = request_headers.get("origin", "")
        return problem(403, f"cross-origin request from {origin} refused: {refused} not allowed "
                       "(the service's CORS_ORIGINS setting lists the allowed origins)", slug="cors-refused",
                       title="Cross-origin request refused")


async def get_session(request: Request) -> AsyncSession:
    """A database session per request: transactional for writes, statement-at-a-time (autocommit) for reads.

    A plain dependency closed by HttpMiddleware when the request is over, not a `yield` dependency: FastAPI's exit
    stack around one costs more than the rest of a typical read."""
    runtime = request.app.state.runtime
    session = (runtime.read_sessions if request.method in SAFE_METHODS else runtime.sessions)()
    on_request_end(request.scope, session.close)
    return session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


# A request allocates thousands of short-lived containers; at CPython's default (700, 10, 10) the collector ran more
# than once per request. Measured over 12,000 in-process registry and bare requests: 1.07-1.17 s of collection at the
# default, 0.47-0.55 s at these thresholds (reference cycles are still collected, in larger and rarer passes).
GC_THRESHOLDS = (20_000, 20, 20)


def create_service_app(spec: ServiceSpec) -> FastAPI:
    """The FastAPI app of a service: problem+json errors, offline docs, /healthz, /readyz, /metrics."""
    s = spec.settings
    tracing.configure(s)  # only if the OTEL_* settings ask for it

    # Before the server's first line: uvicorn calls the app factory before it logs "Started server process".
    configure_logging(service=s.service_name, level=s.log_level, json_logs=s.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        log.info(tracing.describe())
        runtime = Runtime(spec)
        app.state.runtime = runtime
        await runtime.start()
        # Everything built so far (modules, the app, schemas, SQL metadata) lives as long as the process: moved out of
        # the collector's reach, it is no longer traversed by every full collection, which cut the p99 of a write
        # under load by about two thirds in `make bench`.
        gc.collect()
        gc.freeze()
        thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            yield
        finally:
            await runtime.stop()
            await tracing.flush()
            gc.set_threshold(*thresholds)
            gc.unfreeze()  # collectable again: a process that runs several apps in turn (tests, benches) would leak

    app = FastAPIOffline(title=spec.title, description=spec.description, version=spec.version, lifespan=lifespan)
    app.state.spec = spec  # what the service is made of, for tools (ops commands, the AsyncAPI generator)
    app.state.verifier = TokenVerifier(
        secret=s.jwt_secret, algorithms=s.jwt_algorithms, audience=s.jwt_audience, issuer=s.jwt_issuer,
        jwks_url=s.jwks_url,
    )
    install_problem_handlers(app)
    if s.root_path.rstrip("/"):
        app.add_middleware(ServedUnder, root_path=s.root_path.rstrip("/"))
    app.add_middleware(
        HttpMiddleware, service=s.service_name, max_body_bytes=s.max_body_bytes,
        write_rate_per_second=s.write_rate_per_second, write_burst=s.write_burst, verifier=app.state.verifier,
        failed_auth_per_second=s.failed_auth_per_second, failed_auth_burst=s.failed_auth_burst,
    )
    # Outside the edge middleware, so that every answer a browser may read (413 and 429 included) carries CORS headers.
    app.add_middleware(
        ProblemCORSMiddleware, allow_origins=s.cors_origins, allow_methods=sorted(CORS_METHODS),
        allow_headers=CORS_REQUEST_HEADERS, expose_headers=CORS_RESPONSE_HEADERS, max_age=600,
    )
    if tracing.enabled:  # outermost (added last), so the span covers everything; absent (no cost at all) when off
        app.add_middleware(tracing.TracingMiddleware, service=s.service_name)

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok", "service": s.service_name}

    @app.get("/readyz", tags=["operations"], summary="Readiness: database and broker reachable")
    async def readyz(request: Request):
        """Ready when the database answers and the broker serves metadata; else 503 naming what is missing. A ready
        service whose consumers stall answers 200 with status `degraded` and a `degraded` detail naming them."""
        runtime = request.app.state.runtime
        problems = await runtime.ready()
        degraded = runtime.degraded()
        if problems:
            return problem(503, "not ready: " + "; ".join(f"{k} {v}" for k, v in problems.items()),
                           slug="not-ready", headers={"Retry-After": "5"}, checks=problems,
                           **({"degraded": degraded} if degraded else {}))
        if degraded:
            return {"status": "degraded", "service": s.service_name, "degraded": degraded}
        return {"status": "ready", "service": s.service_name}

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus exposition format."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in spec.routers:
        app.include_router(router)

    @app.options("/{path:path}", include_in_schema=False)
    async def options(request: Request) -> Response:
        """The methods a path allows (RFC 9110 9.3.7); CORS preflights are answered before this, by the middleware."""
        allowed = allowed_methods(app, request.url.path)
        if not allowed:
            return problem(404, f"no resource at {request.url.path}", instance=request.url.path)
        return Response(status_code=204, headers={"Allow": ", ".join(sorted(allowed | {"OPTIONS"}))})

    document_security(app)
    install_problem_openapi(app, package=type(s).__module__.split(".")[0])
    return app


def _all_routes(routes):
    """Every route with a path, including those of included routers."""
    for route in routes:
        if hasattr(route, "original_router"):
            yield from _all_routes(route.original_router.routes)
        elif getattr(route, "path_regex", None) is not None:
            yield route


def allowed_methods(app: FastAPI, path: str) -> set[str]:
    """The methods some route serves at `path` (HEAD wherever GET is served; OPTIONS not counted)."""
    methods: set[str] = set()
    for route in _all_routes(app.routes):
        served = set(getattr(route, "methods", None) or ())
        if served == {"OPTIONS"} or not route.path_regex.match(path):
            continue
        methods |= served
    if "GET" in methods:
        methods.add("HEAD")
    return methods


def _api_routes(routes):
    """Every APIRoute, including those of included routers (kept nested by recent FastAPI versions)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from _api_routes(route.original_router.routes)


def document_security(app: FastAPI) -> None:
    """Mark each operation with `x-authenticated` and `x-required-roles`, so tests and integrators can see them."""
    for route in _api_routes(app.routes):
        authenticated, roles = security_of(route.dependant)
        extra = dict(route.openapi_extra or {})
        extra["x-authenticated"] = authenticated
        if roles:
            extra["x-required-roles"] = sorted(roles)
        route.openapi_extra = extra
