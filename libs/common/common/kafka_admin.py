"""Two admin requests aiokafka does not offer for Kafka 4.x: SCRAM credential upserts and ACL creation.

aiokafka 0.14 knows CreateAcls only in versions 0-1, which Kafka 4.0 removed (KIP-896), and has no
AlterUserScramCredentials at all. Both are small flexible-version requests, built here from aiokafka's own protocol
types (schemas from Kafka's CreateAclsRequest.json v2-3 and AlterUserScramCredentialsRequest.json v0) and sent over
an admin client's connection. Used by the development broker's setup, the kafka-access job and tests, as the admin
principal.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactBytes, CompactString, Int8, Int16, Int32, Schema, TaggedFields

SCRAM_ITERATIONS = 8192
_MECHANISMS = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}
RESOURCE_TYPES = {"topic": 2, "group": 3, "cluster": 4, "transactional_id": 5}
PATTERN_TYPES = {"literal": 3, "prefix": 4}
OPERATIONS = {"All": 2, "Read": 3, "Write": 4, "Create": 5, "Delete": 6, "Alter": 7, "Describe": 8,
              "ClusterAction": 9, "DescribeConfigs": 10, "AlterConfigs": 11, "IdempotentWrite": 12}
ALLOW = 3


class KafkaAdminError(RuntimeError):
    """The broker refused an admin request (with its error code and message)."""


class _AlterScramResponse(Response):
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("results", CompactArray(("user", CompactString("utf-8")), ("error_code", Int16),
                                 ("error_message", CompactString("utf-8")), ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class _AlterScramStruct(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterScramResponse
    SCHEMA = Schema(
        ("deletions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields))),
        ("upsertions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8), ("iterations", Int32),
                                    ("salt", CompactBytes), ("salted_password", CompactBytes),
                                    ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class _AlterScram(Request[_AlterScramStruct]):
    API_KEY = 51

    def __init__(self, upsertions: list[tuple]) -> None:
        self.upsertions = upsertions

    def build(self, request_struct_class: type[_AlterScramStruct]) -> _AlterScramStruct:
        return request_struct_class([], self.upsertions, {})


class _CreateAclsResponse(Response):
    API_KEY = 30
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("results", CompactArray(("error_code", Int16), ("error_message", CompactString("utf-8")),
                                 ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class _CreateAclsStruct(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 30
    API_VERSION = 3
    RESPONSE_TYPE = _CreateAclsResponse
    SCHEMA = Schema(
        ("creations", CompactArray(
            ("resource_type", Int8), ("resource_name", CompactString("utf-8")), ("pattern_type", Int8),
            ("principal", CompactString("utf-8")), ("host", CompactString("utf-8")), ("operation", Int8),
            ("permission_type", Int8), ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class _CreateAcls(Request[_CreateAclsStruct]):
    API_KEY = 30

    def __init__(self, creations: list[tuple]) -> None:
        self.creations = creations

    def build(self, request_struct_class: type[_CreateAclsStruct]) -> _CreateAclsStruct:
        return request_struct_class(self.creations, {})


def salted_password(password: str, salt: bytes, *, mechanism: str = "SCRAM-SHA-512",
                    iterations: int = SCRAM_ITERATIONS) -> bytes:
    """SCRAM's SaltedPassword (RFC 5802: Hi = PBKDF2 with the mechanism's HMAC), what the broker stores."""
    return hashlib.pbkdf2_hmac(_MECHANISMS[mechanism][1], password.encode(), salt, iterations)


async def upsert_scram(admin: AIOKafkaAdminClient, passwords: dict[str, str], *,
                       mechanism: str = "SCRAM-SHA-512") -> None:
    """Create or replace the SCRAM credentials of each user (the admin client must be a super user)."""
    if not passwords:
        return
    code = _MECHANISMS[mechanism][0]
    upserts = []
    for user, password in sorted(passwords.items()):
        salt = os.urandom(32)
        upserts.append((user, code, SCRAM_ITERATIONS, salt,
                        salted_password(password, salt, mechanism=mechanism), {}))
    response = await admin._send_request(_AlterScram(upserts))
    failed = [f"{user}: {code} {msg}" for user, code, msg, _ in response.results if code]
    if failed:
        raise KafkaAdminError("SCRAM credentials refused: " + "; ".join(failed))


def _creation(acl: Any) -> tuple:
    name = "kafka-cluster" if acl.resource == "cluster" else acl.name
    return (RESOURCE_TYPES[acl.resource], name, PATTERN_TYPES[acl.pattern], f"User:{acl.principal}", "*",
            OPERATIONS[acl.operation], ALLOW, {})


async def create_acls(admin: AIOKafkaAdminClient, acls: Iterable[Any]) -> int:
    """Create ALLOW ACLs (objects with principal, resource, name, pattern, operation); existing ones are kept."""
    creations = [_creation(a) for a in acls]
    if not creations:
        return 0
    response = await admin._send_request(_CreateAcls(creations))
    failed = [f"{c[3]} {c[1]}: {code} {msg}" for c, (code, msg, _) in zip(creations, response.results) if code]
    if failed:
        raise KafkaAdminError("ACLs refused: " + "; ".join(failed[:5]))
    return len(creations)


async def wait_enforced(bootstrap: str, *, acls: Iterable[Any], passwords: dict[str, str], protocol: str,
                        cafile: str | None, deadline: float) -> str | None:
    """Return once the broker enforces freshly created credentials and ACLs, or raise TimeoutError at `deadline`
    (time.monotonic()). The authoriser and the SCRAM store follow the metadata log a moment after the controller
    acknowledged the change, and a client in that moment is refused (seen on a loaded machine:
    ClusterAuthorizationFailed for the first idempotent producer). One principal proves it: its SCRAM login and its
    IdempotentWrite, the last kinds of record created. Returns that principal (None when no principal of `passwords`
    has IdempotentWrite)."""
    import asyncio
    import logging
    import time

    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from common.kafka import KafkaSecurity

    who = next((a.principal for a in acls if a.resource == "cluster" and a.principal in passwords), None)
    if who is None:
        return None
    probe = KafkaSecurity(protocol=protocol, mechanism="SCRAM-SHA-512", username=who, password=passwords[who],
                          cafile=cafile)
    sender_log = logging.getLogger("aiokafka.producer.sender")
    level = sender_log.level
    sender_log.setLevel(logging.CRITICAL)  # the refusals expected meanwhile are not errors worth printing
    try:
        while True:
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                        request_timeout_ms=5000, **probe.client_kwargs())
            try:
                await producer.start()  # authenticates and asks for a producer id (IdempotentWrite)
                return who
            except KafkaError as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the broker does not enforce the new credentials and ACLs yet: {exc!r}"
                                       ) from exc
                await asyncio.sleep(0.2)
            finally:
                await producer.stop()
    finally:
        sender_log.setLevel(level)
