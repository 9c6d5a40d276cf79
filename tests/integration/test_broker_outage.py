"""A stopped broker delays events but loses none: writes keep succeeding, events flow when it returns."""

from __future__ import annotations

import asyncio

import pytest

import matching.main
import registry.main
from common.metrics import OUTBOX_BACKLOG
from matching.config import Settings as MatchingSettings
from registry.config import Settings as RegistrySettings
from registry.domain import uscc_check_char
from tests.support.harness import auth, fresh_database, run_service, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def enterprise(i: int) -> dict:
    """A valid enterprise registration (USCC with a correct check character)."""
    first17 = f"9131011500{i:07d}"
    return {"kind": "enterprise", "name_zh": f"断网测试企业{i}", "uscc": first17 + uscc_check_char(first17),
            "district": "pudong"}


async def test_writes_succeed_while_the_broker_is_down_and_their_events_arrive_after(broker):
    if not broker.owned:
        pytest.skip("needs a broker this test session started (KAFKA_BOOTSTRAP_SERVERS is set)")
    office = auth("office_admin")
    async with (
        run_service(registry.main.create_app, RegistrySettings, broker=broker,
                    db_url=await fresh_database("registry")) as reg,
        run_service(matching.main.create_app, MatchingSettings, broker=broker,
                    db_url=await fresh_database("matching")) as mat,
    ):
        await asyncio.to_thread(broker.stop)
        try:
            ids = []
            for i in range(5):
                r = await reg.http.post("/institutions", json=enterprise(i), headers=office)
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
            await asyncio.sleep(1.0)
            not_ready = await reg.http.get("/readyz")
            assert not_ready.status_code == 503 and "broker" in not_ready.json()["detail"]
            await reg.runtime.relay._update_gauges()
            assert OUTBOX_BACKLOG.labels("registry")._value.get() == 5
        finally:
            await asyncio.to_thread(broker.start)

        async def all_in_matching():
            for i in ids:
                if (await mat.http.get(f"/institutions/{i}")).status_code != 200:
                    return False
            return True

        await wait_until(all_in_matching, timeout=90, what="every event written during the outage")
        rows = (await mat.http.get("/institutions", params={"district": "pudong"})).json()["items"]
        assert sorted(r["id"] for r in rows if r["id"] in ids) == sorted(ids)
