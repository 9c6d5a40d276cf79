"""Kafka connection settings for a municipal platform, read from the environment (see docs/integration-guide.md).

    KAFKA_BOOTSTRAP_SERVERS   host:port[,host:port]          default 127.0.0.1:9092 (a development broker)
    KAFKA_SECURITY_PROTOCOL   PLAINTEXT | SASL_SSL | SSL | SASL_PLAINTEXT   default PLAINTEXT
    KAFKA_SASL_MECHANISM      SCRAM-SHA-512 (what the platform issues)      default SCRAM-SHA-512
    KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD   your platform's credentials, issued by the office
    KAFKA_SSL_CAFILE          the PEM file of the certificate authority that signed the brokers' certificates
"""

from __future__ import annotations

import os

from aiokafka.helpers import create_ssl_context

# The largest record the platform takes (the whole CloudEvent plus key and headers), in bytes: docs/asyncapi.yaml
# gives it per topic as `max.message.bytes`.
MAX_RECORD_BYTES = 2 * 1024 * 1024


def kafka_settings() -> dict:
    """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer from the KAFKA_* environment variables."""
    protocol = os.environ.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
    settings: dict = {"bootstrap_servers": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                      "security_protocol": protocol}
    if protocol.startswith("SASL_"):
        settings |= {"sasl_mechanism": os.environ.get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
                     "sasl_plain_username": os.environ["KAFKA_SASL_USERNAME"],
                     "sasl_plain_password": os.environ["KAFKA_SASL_PASSWORD"]}
    if protocol.endswith("SSL"):
        settings["ssl_context"] = create_ssl_context(cafile=os.environ.get("KAFKA_SSL_CAFILE"))
    return settings
