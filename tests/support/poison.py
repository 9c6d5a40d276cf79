"""Poison for inbound topics: ten kinds of message no consumer may apply, each one unique, plus valid records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson

from common.events import CloudEvent

PREFIX = "cn.gov.sh.cjrh"
KINDS = (
    "malformed JSON", "not an object", "wrong specversion", "envelope missing fields", "unknown event type",
    "payload missing fields", "payload wrong types", "invalid USCC check character", "oversized value",
    "wrong encoding (GBK)",
)


def _event(type_name: str, data: dict) -> bytes:
    return CloudEvent(id=str(uuid.uuid4()), source="//scjgj.sh.gov.cn/enterprise", type=f"{PREFIX}.{type_name}",
                      subject=str(data.get("uscc", "x")), time=datetime.now(UTC), data=data).to_bytes()


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
