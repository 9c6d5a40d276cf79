"""Stopping a service ends in bounded time, whatever the broker does meanwhile: an orchestrator's grace period
(compose 30 s, Kubernetes 40-60 s) is never exceeded by a consumer that cannot leave its group."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer

import matching.main
from common.consumer import STOP_SECONDS
from matching.config import Settings
from tests.support.harness import fresh_database, run_service

pytestmark = pytest.mark.integration


async def test_a_consumer_that_cannot_leave_its_group_does_not_hold_the_shutdown(broker, monkeypatch):
    async def never_leaves(self):  # a coordinator that never answers the LeaveGroup (seen under load)
        await asyncio.sleep(3600)

    started_stops = []
    async with run_service(matching.main.create_app, Settings, broker=broker,
                           db_url=await fresh_database("matching")) as svc:
        assert svc.runtime.consumers, "matching consumes registry's topics"
        monkeypatch.setattr(AIOKafkaConsumer, "stop", never_leaves)
        started_stops.append(time.monotonic())
    took = time.monotonic() - started_stops[0]
    assert took < STOP_SECONDS + 10, f"the shutdown took {took:.1f} s"
