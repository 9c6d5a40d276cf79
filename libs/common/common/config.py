"""The shared base for each service's settings class: the only place that reads the environment."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _shared(name: str, default, **kw):
    """A setting every service reads from the same unprefixed variable (e.g. KAFKA_BOOTSTRAP_SERVERS)."""
    return Field(default, validation_alias=AliasChoices(name.lower(), name), **kw)


class ServiceSettings(BaseSettings):
    """Settings common to all services; each service subclasses it with its own env prefix and defaults."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    service_name: str = "service"
    port: int = 8000
    database_url: str = "sqlite+aiosqlite:///./.local/db/service.db"
    run_migrations: bool = True

    kafka_bootstrap_servers: str = _shared("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    topic_partitions: int = _shared("TOPIC_PARTITIONS", 3)
    topic_replication: int = _shared("TOPIC_REPLICATION", 1)
    event_type_prefix: str = _shared("EVENT_TYPE_PREFIX", "cn.gov.sh.cjrh")
    event_source_base: str = _shared("EVENT_SOURCE_BASE", "//platform.cjrh.sh.cn")

    jwt_secret: str = _shared("JWT_SECRET", "dev-secret-change-me-please-32-bytes!")
    jwt_algorithms: list[str] = _shared("JWT_ALGORITHMS", ["HS256"])
    jwt_audience: str = _shared("JWT_AUDIENCE", "cjrh-platform")
    jwt_issuer: str | None = _shared("JWT_ISSUER", None)
    jwks_url: str | None = _shared("JWKS_URL", None)

    outbox_sweep_seconds: float = _shared("OUTBOX_SWEEP_SECONDS", 1.0)
    outbox_batch_size: int = _shared("OUTBOX_BATCH_SIZE", 5000)
    consumer_max_attempts: int = _shared("CONSUMER_MAX_ATTEMPTS", 5)
    consumer_backoff_seconds: float = _shared("CONSUMER_BACKOFF_SECONDS", 0.2)
    consumer_batch_size: int = _shared("CONSUMER_BATCH_SIZE", 500)
    run_workers: bool = _shared("RUN_WORKERS", True)
    # Processed event ids are kept longer than any topic keeps its messages (Kafka's default is 7 days), so a
    # redelivery is always recognised; older ids are pruned hourly by the worker.
    processed_retention_days: float = _shared("PROCESSED_RETENTION_DAYS", 30.0)
    consumer_group_suffix: str = _shared("CONSUMER_GROUP_SUFFIX", "")  # e.g. per test, or a blue/green deployment

    log_level: str = _shared("LOG_LEVEL", "INFO")
    log_json: bool = _shared("LOG_JSON", True)
    max_body_bytes: int = _shared("MAX_BODY_BYTES", 1_048_576)
    write_rate_per_second: float = _shared("WRITE_RATE_PER_SECOND", 100.0)  # per caller and process; 0 turns it off
    write_burst: int = _shared("WRITE_BURST", 200)
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

    @property
    def event_source(self) -> str:
        """The CloudEvents `source` of everything this service publishes."""
        return f"{self.event_source_base}/{self.service_name}"
