"""The registration function in migration 0003 spells the domain's seat rules in SQL: its status literals must agree."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from events import domain

pytestmark = pytest.mark.unit

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "versions" / "0003_register_new_function.py"


def _function_sql() -> str:
    spec = importlib.util.spec_from_file_location("events_migration_0003", MIGRATION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.REGISTER_NEW


def test_the_function_counts_as_held_exactly_the_statuses_that_hold_a_seat():
    [held] = re.findall(r"status IN \(([^)]*)\)", _function_sql())
    assert {s.strip(" '") for s in held.split(",")} == {s.value for s in domain.HOLDS_SEAT}


def test_the_function_writes_only_statuses_the_domain_knows_and_queues_by_the_waitlisted_one():
    sql = _function_sql()
    written = set(re.findall(r"THEN '(\w+)' ELSE '(\w+)'", sql)[0])
    assert written == {domain.RegistrationStatus.CONFIRMED.value, domain.RegistrationStatus.WAITLISTED.value}
    assert f"status = '{domain.RegistrationStatus.WAITLISTED.value}'" in sql
