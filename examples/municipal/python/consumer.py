"""Follow registry.certification.v1 (certified enterprises) with a consumer group of your own, idempotently.

    python consumer.py --group human-resources.certifications [--topic registry.certification.v1] [--idle-exit 10]

Prints one JSON line per applied event: {"type", "id", "subject", "status", "version"}. Each enterprise's events are
in order on one partition; an event seen again (redelivery) or older than what was applied is skipped; types this
program does not know are skipped too (new types may appear within a topic version). Offsets are committed only
after the events are applied.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiokafka import AIOKafkaConsumer
from cloudevents.v1.kafka import KafkaMessage, from_structured
from connection import kafka_settings

PREFIX = "cn.gov.sh.cjrh.registry.certification."
KNOWN = {PREFIX + n for n in ("pooled", "applied", "reviewed", "certified", "announced", "objection_raised",
                              "evaluated", "rectification_required", "withdrawn", "revoked")}


class Certifications:
    """Your copy of the certified-enterprise list (here in memory; in your system, a table)."""

    def __init__(self) -> None:
        self.by_id: dict[str, dict] = {}
        self.seen: set[str] = set()

    def apply(self, event) -> bool:
        """Upsert when newer than what is held; False for a duplicate, an older version or an unknown type."""
        data = event.get_data()
        if event["id"] in self.seen or event["type"] not in KNOWN:
            return False
        self.seen.add(event["id"])
        held = self.by_id.get(data["id"])
        if held is not None and held["version"] >= data["version"]:
            return False
        self.by_id[data["id"]] = data
        return True


async def follow(topic: str, group: str, idle_exit: float | None) -> None:
    """Consume from the earliest offset, apply, commit; stop after `idle_exit` seconds without records if given."""
    consumer = AIOKafkaConsumer(topic, **kafka_settings(), group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level="read_committed")
    state = Certifications()
    await consumer.start()
    try:
        last = time.monotonic()
        while idle_exit is None or time.monotonic() - last < idle_exit:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for r in records:
                    last = time.monotonic()
                    message = KafkaMessage(headers=dict(r.headers), key=r.key, value=r.value)
                    try:
                        event = from_structured(message, data_unmarshaller=lambda d: d)
                    except Exception as exc:  # not a CloudEvent: log and go on (never stall on one record)
                        print(json.dumps({"skipped": f"{r.topic}:{r.partition}:{r.offset}", "why": str(exc)}))
                        continue
                    if state.apply(event):
                        data = event.get_data()
                        print(json.dumps({"type": event["type"], "id": event["id"], "subject": event["subject"],
                                          "status": data["status"], "version": data["version"]},
                                         ensure_ascii=False), flush=True)
            if any(batches.values()):
                await consumer.commit()  # after the changes are durable in your system
    finally:
        await consumer.stop()


def main() -> None:
    """Parse the arguments and follow the topic."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--group", required=True, help="your own consumer group, e.g. human-resources.certifications")
    ap.add_argument("--topic", default="registry.certification.v1")
    ap.add_argument("--idle-exit", type=float, help="stop after this many seconds without records")
    args = ap.parse_args()
    asyncio.run(follow(args.topic, args.group, args.idle_exit))


if __name__ == "__main__":
    main()
