"""Poison for inbound topics: ten kinds of message no consumer may apply, each one unique, plus valid records, for both
municipal.enterprise.v1 (registry) and municipal.talent-demand.v1 (matching)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson

from common.events import CloudEvent

PREFIX = "cn.gov.sh.cjrh"
KINDS = (
    "malformed JSON", "not an object", "wrong specversion", "envelope missing fields", "unknown event type",
    "payload missing fields", "payload wrong types", "invalid USCC check character", "oversized value",
    "wrong encoding (GBK)",
)


def _event(type_name: str, data: dict, source: str = "//scjgj.sh.gov.cn/enterprise") -> bytes:
    return CloudEvent(id=str(uuid.uuid4()), source=source, type=f"{PREFIX}.{type_name}",
                      subject=str(data.get("uscc", data.get("external_id", "x"))), time=datetime.now(UTC),
                      data=data).to_bytes()


def enterprise_poison(i: int, kind: str, *, valid_uscc: str) -> bytes:
    """One poison message of `kind` for municipal.enterprise.v1, made unique by `i`."""
    good = {"uscc": valid_uscc, "name": f"毒药测试企业{i}", "district": "浦东新区", "industry": "集成电路",
            "status": "存续"}
    if kind == "malformed JSON":
        return b'{"specversion": "1.0", "id": "' + str(i).encode() + b'", broken'
    if kind == "not an object":
        return orjson.dumps([i, "not", "an", "event"])
    if kind == "wrong specversion":
        return orjson.dumps({"specversion": "0.3", "id": f"p{i}", "type": "x", "source": "y"})
    if kind == "envelope missing fields":
        return orjson.dumps({"specversion": "1.0", "id": f"p{i}", "data": good})
    if kind == "unknown event type":
        return _event("municipal.enterprise.exploded", good)
    if kind == "payload missing fields":
        return _event("municipal.enterprise.upserted", {"name": f"缺字段企业{i}"})
    if kind == "payload wrong types":
        return _event("municipal.enterprise.upserted", {**good, "name": i, "status": ["存续"]})
    if kind == "invalid USCC check character":
        bad = valid_uscc[:17] + ("0" if valid_uscc[17] != "0" else "1")
        return _event("municipal.enterprise.upserted", {**good, "uscc": bad})
    if kind == "oversized value":
        return _event("municipal.enterprise.upserted", {**good, "name": "超" * 5000 + str(i)})
    if kind == "wrong encoding (GBK)":
        doc = {"specversion": "1.0", "id": f"p{i}", "source": "城市", "type": f"{PREFIX}.municipal.enterprise.upserted"}
        return orjson.dumps(doc).decode().encode("gbk")
    raise ValueError(kind)


def enterprise_record(uscc: str, name: str) -> bytes:
    """A valid municipal.enterprise.v1 record."""
    return _event("municipal.enterprise.upserted",
                  {"uscc": uscc, "name": name, "district": "浦东新区", "industry": "集成电路", "status": "存续"})


HR_SOURCE = "//rsj.sh.gov.cn/talent-demand"
POSTED = "municipal.talent_demand.posted"


def talent_demand(external_id: str, *, employer_uscc: str, **changes) -> dict:
    """The data of a valid municipal.talent-demand.v1 record (a position open for 30 days), with `changes`."""
    return {"external_id": external_id, "employer_uscc": employer_uscc, "employer_name": "毒药测试用人单位",
            "title": "设备维护技术员", "skills": ["PLC编程"], "industry": "integrated_circuits", "district": "lingang",
            "headcount": 2, "deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(), **changes}


def talent_demand_record(external_id: str, *, employer_uscc: str) -> bytes:
    """A valid municipal.talent-demand.v1 record."""
    return _event(POSTED, talent_demand(external_id, employer_uscc=employer_uscc), HR_SOURCE)


def talent_demand_poison(i: int, kind: str, *, valid_uscc: str) -> bytes:
    """One poison message of `kind` for municipal.talent-demand.v1, made unique by `i`."""
    good = talent_demand(f"poison-{i}", employer_uscc=valid_uscc)
    if kind == "unknown event type":
        return _event("municipal.talent_demand.exploded", good, HR_SOURCE)
    if kind == "payload missing fields":
        return _event(POSTED, {"title": f"缺字段岗位{i}"}, HR_SOURCE)
    if kind == "payload wrong types":
        return _event(POSTED, {**good, "headcount": "many", "skills": "PLC"}, HR_SOURCE)
    if kind == "invalid USCC check character":
        bad = valid_uscc[:17] + ("0" if valid_uscc[17] != "0" else "1")
        return _event(POSTED, {**good, "employer_uscc": bad}, HR_SOURCE)
    if kind == "oversized value":
        return _event(POSTED, {**good, "title": "超" * 5000 + str(i)}, HR_SOURCE)
    if kind == "wrong encoding (GBK)":
        doc = {"specversion": "1.0", "id": f"p{i}", "source": "城市", "type": f"{PREFIX}.{POSTED}"}
        return orjson.dumps(doc).decode().encode("gbk")
    return enterprise_poison(i, kind, valid_uscc=valid_uscc)  # the envelope-level kinds are the same on every topic
