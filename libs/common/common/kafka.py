"""How every Kafka client of the platform connects: bootstrap servers plus TLS and SASL settings, in one place.

Every producer, consumer and admin client a service (or a test, benchmark or tool) creates takes its connection
arguments from a `KafkaSecurity`, built from the settings `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_MECHANISM`,
`KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD`, `KAFKA_SSL_CAFILE` (and, for mutual TLS, `KAFKA_SSL_CERTFILE`,
`KAFKA_SSL_KEYFILE`). The default is SASL_SSL with SCRAM-SHA-512, as every broker the platform starts or ships runs.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from aiokafka.helpers import create_ssl_context

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


class KafkaSecurityError(ValueError):
    """The Kafka connection settings are incomplete or contradictory (e.g. SASL without a password)."""


@dataclass(frozen=True)
class KafkaSecurity:
    """The TLS and SASL side of a Kafka connection; `client_kwargs()` gives aiokafka's arguments."""

    protocol: str = "SASL_SSL"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise KafkaSecurityError(f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, "
                                     f"not {self.protocol!r}")
        if self.sasl and self.mechanism not in MECHANISMS:
            raise KafkaSecurityError(f"KAFKA_SASL_MECHANISM must be one of {', '.join(MECHANISMS)}, "
                                     f"not {self.mechanism!r}")

    @property
    def sasl(self) -> bool:
        """Whether the connection authenticates with SASL."""
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted."""
        return self.protocol in ("SSL", "SASL_SSL")

    @cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (trusting KAFKA_SSL_CAFILE, or the system's CAs), built once per settings object."""
        if not self.tls:
            return None
        return create_ssl_context(cafile=self.cafile, certfile=self.certfile, keyfile=self.keyfile)

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient."""
        kw: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            kw["ssl_context"] = self.ssl_context
        if self.sasl:
            if not self.username or not self.password:
                raise KafkaSecurityError(
                    f"{self.protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD "
                    f"(username {self.username!r}, password {'set' if self.password else 'missing'})")
            kw.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                      sasl_plain_password=self.password)
        return kw

    def as_env(self) -> dict[str, str]:
        """The same settings as environment variables, for a child process (`make run`, tests, benchmarks)."""
        env = {"KAFKA_SECURITY_PROTOCOL": self.protocol, "KAFKA_SASL_MECHANISM": self.mechanism}
        for name, value in (("KAFKA_SASL_USERNAME", self.username), ("KAFKA_SASL_PASSWORD", self.password),
                            ("KAFKA_SSL_CAFILE", self.cafile), ("KAFKA_SSL_CERTFILE", self.certfile),
                            ("KAFKA_SSL_KEYFILE", self.keyfile)):
            if value:
                env[name] = value
        return env


PLAINTEXT = KafkaSecurity(protocol="PLAINTEXT")


@dataclass(frozen=True)
class LocalCredentials:
    """The development broker's credentials file (`.local/kafka/credentials.json`, written by scripts/broker.py)."""

    path: Path
    doc: dict

    @classmethod
    def load(cls, path: Path) -> LocalCredentials:
        """Read the file; a clear error if the broker was never started securely."""
        try:
            return cls(path, json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise KafkaSecurityError(f"no Kafka credentials at {path}: start the broker with "
                                     "`python scripts/broker.py start` first") from None

    @property
    def principals(self) -> list[str]:
        """Every principal the file holds a password for."""
        return sorted(self.doc["principals"])

    def security(self, principal: str) -> KafkaSecurity:
        """How `principal` connects to the development broker."""
        try:
            password = self.doc["principals"][principal]
        except KeyError:
            raise KafkaSecurityError(f"no credentials for Kafka principal {principal!r} in {self.path}") from None
        return KafkaSecurity(protocol=self.doc.get("protocol", "SASL_SSL"),
                             mechanism=self.doc.get("mechanism", "SCRAM-SHA-512"),
                             username=principal, password=password, cafile=self.doc.get("cafile"))
