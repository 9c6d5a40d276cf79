"""The city's enterprise records (municipal.enterprise.v1): upserts by USCC, bad records to the DLQ with a reason."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from common.events import CloudEvent
from services.registry.tests.support import new_uscc
from tests.support.harness import auth, produce, read_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="package")]
TOPIC = "municipal.enterprise.v1"
TYPE = "cn.gov.sh.cjrh.municipal.enterprise.upserted"


def record(data, *, type_: str = TYPE, event_id: str | None = None) -> bytes:
    return CloudEvent(id=event_id or str(uuid.uuid4()), source="//scjgj.sh.gov.cn/enterprise", type=type_,
                      time=datetime.now(UTC), data=data).to_bytes()


async def find_by_uscc(reg, uscc: str, name_part: str):
    r = await reg.http.get("/institutions", params={"q": name_part}, headers=auth("office_admin"))
    return [i for i in r.json()["items"] if i["uscc"] == uscc]


async def test_records_are_upserted_by_uscc_and_redelivery_is_harmless(reg):
    uscc = new_uscc()
    first = record({"uscc": uscc, "name": "上海市政推送科技有限公司", "district": "浦东新区",
                    "industry": "集成电路", "status": "存续"})
    await produce(reg_bootstrap(reg), TOPIC, [first, first], key=uscc.encode())
    [inst] = await wait_until(lambda: find_by_uscc(reg, uscc, "市政推送"), what="the enterprise from the city",
                              timeout=60)
    assert inst["kind"] == "enterprise" and inst["district"] == "pudong"
    assert inst["industries"] == ["integrated_circuits"] and inst["status"] == "active" and inst["version"] == 1

    renamed = record({"uscc": uscc, "name": "上海市政推送半导体有限公司", "district": "lingang",
                      "industry": "人工智能", "status": "注销"})
    await produce(reg_bootstrap(reg), TOPIC, [renamed], key=uscc.encode())

    async def updated():
        found = await find_by_uscc(reg, uscc, "市政推送半导体")
        return found and found[0]["status"] == "inactive" and found

    [after] = await wait_until(updated, what="the renamed, deregistered enterprise", timeout=60)
    assert after["district"] == "lingang"
    assert after["industries"] == ["integrated_circuits", "artificial_intelligence"]
    history = (await reg.http.get(f"/institutions/{after['id']}/history", headers=auth("office_admin"))).json()
    assert [h["change"] for h in history] == ["registered", "updated", "status_changed"]
    assert all(h["actor"] == "municipal:market-supervision" for h in history)


BAD = {
    "bad checksum": ({"uscc": "91350100M000100Y4A", "name": "坏校验位公司", "district": "pudong",
                      "status": "active"}, "check character"),
    "missing field": ({"uscc": "91350100M000100Y43", "district": "pudong", "status": "active"}, "name"),
    "wrong type": ({"uscc": "91350100M000100Y43", "name": "类型错误公司", "district": 5, "status": "active"},
                   "district"),
    "oversized": ({"uscc": "91350100M000100Y43", "name": "超大公司", "district": "pudong", "status": "active",
                   "notes": "x" * 20000}, "oversized"),
    "unknown district": ({"uscc": "91350100M000100Y43", "name": "外地公司", "district": "北京",
                          "status": "active"}, "district: Input should be"),
}


async def test_invalid_records_go_to_the_dead_letter_topic_with_the_reason(reg):
    marker = uuid.uuid4().hex
    messages = [record(data, event_id=f"{marker}-{i}") for i, (data, _) in enumerate(BAD.values())]
    messages.append(record({"uscc": new_uscc()}, type_="cn.gov.sh.cjrh.municipal.enterprise.deleted",
                           event_id=f"{marker}-unknown-type"))
    messages.append(b"{not json")
    await produce(reg_bootstrap(reg), TOPIC, messages, key=marker.encode())
    dlq = await read_topic(reg_bootstrap(reg), f"{TOPIC}.dlq",
                           until=lambda rs: sum(r.key == marker.encode() for r in rs) >= len(messages), timeout=60)
    mine = [r for r in dlq if r.key == marker.encode()]
    reasons = {dict(r.headers).get("dlq.event_id", b"?").decode(): dict(r.headers)["dlq.reason"].decode()
               for r in mine}
    for i, (case, (_, expected)) in enumerate(BAD.items()):
        assert expected in reasons[f"{marker}-{i}"], (case, reasons[f"{marker}-{i}"])
    all_reasons = [dict(r.headers)["dlq.reason"].decode() for r in mine]
    assert any("unknown event type" in reason and "enterprise.deleted" in reason for reason in all_reasons)
    assert any("not valid JSON" in dict(r.headers)["dlq.reason"].decode() for r in mine)
    assert all(dict(r.headers)["dlq.original.topic"] == TOPIC.encode() for r in mine)
    none = (await reg.http.get("/institutions", params={"q": "坏校验位"})).json()["items"]
    assert none == []


def reg_bootstrap(reg) -> str:
    return reg.runtime.settings.kafka_bootstrap_servers
