"""Send one position to municipal.talent-demand.v1 as a CloudEvent (structured JSON), keyed by its external id.

    python producer.py --external-id hrss-2026-000183 --employer-uscc 91310000132214209T --title 设备维护技术员 \
        --industry integrated_circuits --district lingang --headcount 8 --deadline 2030-06-30T18:00:00+08:00

Prints the event id. Send the same --event-id again to retry the same record version: the platform applies it once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid

from aiokafka import AIOKafkaProducer
from cloudevents.v1.http import CloudEvent
from cloudevents.v1.kafka import to_structured
from connection import MAX_RECORD_BYTES, kafka_settings

TOPIC = "municipal.talent-demand.v1"
TYPE = "cn.gov.sh.cjrh.municipal.talent_demand.posted"


def position_event(args: argparse.Namespace) -> CloudEvent:
    """The CloudEvent of one posted position (the data is what docs/asyncapi.yaml specifies for the type)."""
    data = {"external_id": args.external_id, "employer_uscc": args.employer_uscc, "employer_name": args.employer_name,
            "title": args.title, "skills": args.skills, "industry": args.industry, "district": args.district,
            "headcount": args.headcount, "deadline": args.deadline}
    attributes = {"id": args.event_id or str(uuid.uuid4()), "source": args.source, "type": TYPE,
                  "subject": args.external_id, "datacontenttype": "application/json",
                  "partitionkey": args.external_id}  # the SDK's Kafka binding makes it the record key
    return CloudEvent(attributes, data)


async def send(event: CloudEvent) -> None:
    """Produce the event idempotently, acknowledged by all in-sync replicas."""
    message = to_structured(event, data_marshaller=lambda d: d, envelope_marshaller=json.dumps)
    producer = AIOKafkaProducer(**kafka_settings(), acks="all", enable_idempotence=True,
                                max_request_size=MAX_RECORD_BYTES)
    await producer.start()
    try:
        await producer.send_and_wait(TOPIC, value=message.value, key=message.key.encode(),
                                     headers=list(message.headers.items()))
    finally:
        await producer.stop()


def main() -> None:
    """Parse the arguments, send the position, print its event id."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--external-id", required=True)
    ap.add_argument("--employer-uscc", required=True)
    ap.add_argument("--employer-name", default="上海临港经济发展（集团）有限公司")
    ap.add_argument("--title", default="设备维护技术员")
    ap.add_argument("--skills", nargs="*", default=["PLC编程", "电气维修"])
    ap.add_argument("--industry", default="integrated_circuits")
    ap.add_argument("--district", default="lingang")
    ap.add_argument("--headcount", type=int, default=8)
    ap.add_argument("--deadline", default="2030-06-30T18:00:00+08:00")
    ap.add_argument("--source", default="//rsj.sh.gov.cn/talent-demand", help="your platform's CloudEvents source")
    ap.add_argument("--event-id", help="reuse to retry the same record version")
    event = position_event(ap.parse_args())
    asyncio.run(send(event))
    print(event["id"])


if __name__ == "__main__":
    main()
