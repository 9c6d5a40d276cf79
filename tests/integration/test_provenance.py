"""Consumers check provenance: an event whose CloudEvents `source` is not an owner of the topic it arrived on is
dead-lettered with that reason, even when the principal that wrote it was allowed to write the topic (defence in
depth behind the ACLs: a leaked credential or a misconfigured ACL cannot make the platform apply forged events)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

import matching.main
import registry.main
from common.events import CloudEvent
from matching.config import Settings as MatchingSettings
from registry.config import Settings as RegistrySettings
from services.registry.tests.support import new_uscc
from tests.support.harness import auth, fresh_database, produce, read_topic, run_service, wait_until

pytestmark = pytest.mark.integration
PREFIX = "cn.gov.sh.cjrh"


def enterprise(uscc: str, name: str, *, source: str, event_id: str) -> bytes:
    return CloudEvent(id=event_id, source=source, type=f"{PREFIX}.municipal.enterprise.upserted", subject=uscc,
                      time=datetime.now(UTC), data={"uscc": uscc, "name": name, "district": "浦东新区",
                                                   "industry": "集成电路", "status": "存续"}).to_bytes()


async def _dead_lettered(broker, topic: str, event_id: str) -> dict[str, str]:
    records = await read_topic(broker.bootstrap, f"{topic}.dlq", timeout=60, until=lambda rs: any(
        dict(r.headers).get("dlq.event_id") == event_id.encode() for r in rs))
    [record] = [r for r in records if dict(r.headers).get("dlq.event_id") == event_id.encode()]
    return {k: v.decode() for k, v in record.headers}


async def test_an_inbound_record_from_a_source_that_does_not_own_the_topic_is_dead_lettered(broker):
    platform = broker.security("market-supervision")  # allowed to write the topic: only the source is wrong
    forged, genuine = f"forged-{uuid.uuid4().hex}", f"genuine-{uuid.uuid4().hex}"
    forged_uscc, genuine_uscc = new_uscc(), new_uscc()
    async with run_service(registry.main.create_app, RegistrySettings, broker=broker,
                           db_url=await fresh_database("registry")) as reg:
        await produce(broker.bootstrap, "municipal.enterprise.v1", [
            enterprise(forged_uscc, "冒名推送企业", source="//impostor.example/enterprise", event_id=forged),
            enterprise(genuine_uscc, "真实推送企业", source="//scjgj.sh.gov.cn/enterprise", event_id=genuine),
        ], key=b"provenance", security=platform)

        headers = await _dead_lettered(broker, "municipal.enterprise.v1", forged)
        assert "provenance" in headers["dlq.reason"] and "//impostor.example/enterprise" in headers["dlq.reason"]
        assert "//scjgj.sh.gov.cn/enterprise" in headers["dlq.reason"]

        async def applied(uscc: str, q: str):
            r = await reg.http.get("/institutions", params={"q": q}, headers=auth("office_admin"))
            return [i for i in r.json()["items"] if i["uscc"] == uscc]

        await wait_until(lambda: applied(genuine_uscc, "真实推送"), what="the genuine record applied", timeout=60)
        assert await applied(forged_uscc, "冒名推送") == []


async def test_a_service_event_claiming_another_services_source_is_dead_lettered(broker):
    """An institution event on registry.institution.v1 that says it comes from matching is not registry's."""
    inst, event_id = str(uuid.uuid4()), f"forged-{uuid.uuid4().hex}"
    forged = CloudEvent(
        id=event_id, source="//platform.cjrh.sh.cn/matching", type=f"{PREFIX}.registry.institution.registered",
        subject=inst, time=datetime.now(UTC),
        data={"id": inst, "kind": "enterprise", "name_zh": "伪造机构", "district": "pudong", "status": "active",
              "version": 1, "updated_at": datetime.now(UTC).isoformat()}).to_bytes()
    async with run_service(matching.main.create_app, MatchingSettings, broker=broker,
                           db_url=await fresh_database("matching")) as mat:
        await produce(broker.bootstrap, "registry.institution.v1", [forged], key=inst.encode())
        headers = await _dead_lettered(broker, "registry.institution.v1", event_id)
        assert "provenance" in headers["dlq.reason"] and headers["dlq.consumer"].startswith("matching.")
        assert (await mat.http.get(f"/institutions/{inst}")).status_code == 404
