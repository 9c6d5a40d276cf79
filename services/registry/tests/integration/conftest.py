"""Fixtures of the registry's tests: one registry for all integration tests against the real broker and PostgreSQL."""

from __future__ import annotations

import pytest_asyncio

import registry.main
from registry.config import Settings
from tests.support.harness import fresh_database, run_service


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def reg(broker):
    """A registry service running in-process for every integration test (tests use distinct data)."""
    async with run_service(registry.main.create_app, Settings, broker=broker,
                           db_url=await fresh_database("registry")) as svc:
        yield svc
