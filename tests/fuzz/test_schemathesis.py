"""Hostile input: property-based requests generated from each service's OpenAPI document, with each role's token.

The services run as real uvicorn processes on PostgreSQL with the real broker. For every operation, schemathesis
generates requests (valid and invalid) and sends each one with a token of every role; no answer may be a 5xx, and
every answer must match the response schema the operation documents. FUZZ_EXAMPLES sets the examples per operation
(`make fuzz` uses more than CI).
"""

from __future__ import annotations

import asyncio
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from common.auth import Role
from tests.support.harness import fresh_database, token
from tests.support.processes import ServiceProcess, service_env

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))
TOKENS = {r.value: token(r.value, institution="00000000-0000-4000-8000-000000000001") for r in Role}
COUNTS: dict[str, int] = {}


@pytest.fixture(scope="module")
def platform(broker, tmp_path_factory):
    """The four services as real processes, each on a fresh PostgreSQL database."""
    logs = tmp_path_factory.mktemp("fuzz-logs")
    procs = {}
    for name in ("registry", "matching", "events", "notify"):
        db = asyncio.run(fresh_database(name))
        procs[name] = ServiceProcess(name, "api+worker", service_env(
            name, db_url=db, bootstrap=broker.bootstrap, run_workers=True), logs / f"{name}.log")
        procs[name].start()
    for p in procs.values():
        p.wait_alive(timeout=120)
    yield {n: p.url for n, p in procs.items()}
    for p in procs.values():
        p.stop()
    print(f"\nschemathesis requests sent (every example x every role): {COUNTS}, total {sum(COUNTS.values())}")


def _schema_fixture(service: str):
    @pytest.fixture
    def fixture(platform):
        return schemathesis.openapi.from_url(f"{platform[service]}/openapi.json")

    return fixture


registry_schema = _schema_fixture("registry")
matching_schema = _schema_fixture("matching")
events_schema = _schema_fixture("events")
notify_schema = _schema_fixture("notify")

FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def _exercise(case, service: str) -> None:
    for tok in TOKENS.values():
        case.call_and_validate(headers={"Authorization": f"Bearer {tok}"},
                               checks=[not_a_server_error, response_schema_conformance])
        COUNTS[service] = COUNTS.get(service, 0) + 1


@schemathesis.pytest.from_fixture("registry_schema").parametrize()
@FUZZ
def test_registry_survives_hostile_input(case):
    _exercise(case, "registry")


@schemathesis.pytest.from_fixture("matching_schema").parametrize()
@FUZZ
def test_matching_survives_hostile_input(case):
    _exercise(case, "matching")


@schemathesis.pytest.from_fixture("events_schema").parametrize()
@FUZZ
def test_events_survives_hostile_input(case):
    _exercise(case, "events")


@schemathesis.pytest.from_fixture("notify_schema").parametrize()
@FUZZ
def test_notify_survives_hostile_input(case):
    _exercise(case, "notify")
