"""The walking skeleton: a registration in registry reaches matching and notify through the real broker."""

from __future__ import annotations

import pytest
from cloudevents.v1.conversion import from_json as ce_from_json
from cloudevents.v1.http import CloudEvent as SdkCloudEvent

import matching.main
import notify.main
import registry.main
from matching.config import Settings as MatchingSettings
from notify.config import Settings as NotifySettings
from registry.config import Settings as RegistrySettings
from tests.support.harness import auth, fresh_database, read_topic, run_service, wait_until

pytestmark = pytest.mark.integration

ENTERPRISE = {
    "kind": "enterprise", "name_zh": "上海临港经济发展（集团）有限公司", "uscc": "91310000132214209T",
    "district": "lingang", "industries": ["integrated_circuits", "intelligent_manufacturing"],
    "contact_name": "王经理", "contact_phone": "13800000000", "contact_email": "wang@example.cn",
}


async def test_registered_institution_reaches_matching_and_the_office_inbox(broker):
    office = auth("office_admin")
    async with (
        run_service(registry.main.create_app, RegistrySettings, broker=broker,
                    db_url=await fresh_database("registry")) as reg,
        run_service(matching.main.create_app, MatchingSettings, broker=broker,
                    db_url=await fresh_database("matching")) as mat,
        # a new institution is platform chatter: the office gets it in its inbox digest, after the digest window
        run_service(notify.main.create_app, NotifySettings, broker=broker, db_url=await fresh_database("notify"),
                    digest_window_seconds=0.5, housekeeping_interval_seconds=0.1) as ntf,
    ):
        created = await reg.http.post("/institutions", json=ENTERPRISE, headers=office)
        assert created.status_code == 201, created.text
        inst = created.json()

        async def in_matching():
            r = await mat.http.get(f"/institutions/{inst['id']}")
            return r.json() if r.status_code == 200 else None

        view = await wait_until(in_matching, what="matching's projection")
        assert view["name_zh"] == ENTERPRISE["name_zh"]
        assert view["district"] == "lingang"

        async def in_office_digest():
            r = await ntf.http.get("/inbox", headers=office)
            return [i for m in r.json()["items"] if m["event_type"] == "digest" for i in m["data"]["items"]
                    if ENTERPRISE["name_zh"] in i["title"]]

        items = await wait_until(in_office_digest, what="the office's inbox digest")
        assert len(items) == 1

        records = await read_topic(
            broker.bootstrap, "registry.institution.v1",
            until=lambda rs: any(r.key == inst["id"].encode() for r in rs),
        )
        [record] = [r for r in records if r.key == inst["id"].encode()]
        event = ce_from_json(SdkCloudEvent, record.value)
        assert event["type"] == "cn.gov.sh.cjrh.registry.institution.registered"
        assert event["subject"] == inst["id"]
        assert event["source"].endswith("/registry")
        assert event.data["uscc"] == ENTERPRISE["uscc"]
        assert "contact_phone" not in event.data, "personal data never travels in public events"
        assert items[0]["event_id"] == event["id"]


async def test_a_member_cannot_read_the_office_inbox(broker):
    async with run_service(notify.main.create_app, NotifySettings, broker=broker,
                           db_url=await fresh_database("notify")) as ntf:
        r = await ntf.http.get("/inbox", headers=auth("member"))
        assert r.status_code == 200 and r.json()["items"] == []
        anonymous = await ntf.http.get("/inbox")
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"].startswith("application/problem+json")
