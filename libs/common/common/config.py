"""The shared base for each service's settings class: the only place that reads the environment."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.kafka import KafkaSecurity


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

    @property
    def kafka_security(self) -> KafkaSecurity:
        """The TLS/SASL side of every Kafka client this service creates."""
        return KafkaSecurity(
            protocol=self.kafka_security_protocol, mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username or self.service_name, password=self.kafka_sasl_password,
            cafile=self.kafka_ssl_cafile, certfile=self.kafka_ssl_certfile, keyfile=self.kafka_ssl_keyfile,
        )

    @property
    def event_source(self) -> str:
        """The CloudEvents `source` of everything this service publishes."""
        return f"{self.event_source_base}/{self.service_name}"
