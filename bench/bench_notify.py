"""Notify: consumed events -> inbox rows per second (idempotency on), and one cancellation fanned out to 10,000.

Each figure sits beside a baseline measured in the same run on the same PostgreSQL: a bare bulk INSERT of the same
number of inbox rows (no Kafka, no dedupe, no planning).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import DBAPIError

import notify.main
from bench.support import BenchContext, table
from common.events import CloudEvent
from notify.config import Settings
from notify.models import InboxMessage, new_id
from tests.support.harness import run_service, tooling_security

PREFIX = "cn.gov.sh.cjrh"
N_EVENTS = 20_000
DUPLICATE_SHARE = 0.1
FAN_OUT = 10_000


def registration_event(participant: str, activity: str, reg_id: str) -> bytes:
    """A registration.confirmed CloudEvent as the events service publishes it."""
    return CloudEvent(
        id=str(uuid.uuid4()), source="//platform.cjrh.sh.cn/events", type=f"{PREFIX}.events.registration.confirmed",
        subject=reg_id, time=datetime.now(UTC),
        data={"id": reg_id, "activity_id": activity, "activity_title": "2026 集成电路产教融合专场招聘会",
              "session_id": None, "participant_id": participant, "participant_kind": "student",
              "institution_id": None, "team_id": None, "status": "confirmed", "queue_position": None,
              "offer_expires_at": None, "version": 1},
    ).to_bytes()


async def produce_all(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]) -> float:
    """Send (key, value) pairs as fast as the producer batches them; returns the seconds it took."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5,
                                max_batch_size=1_048_576, **tooling_security(bootstrap).client_kwargs())
    await producer.start()
    started = time.monotonic()
    try:
        futures = [await producer.send(topic, value=v, key=k) for k, v in items]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def count_rows(svc, **where) -> int:
    """Inbox rows, optionally of one category."""
    async with svc.runtime.sessions() as s:
        q = select(func.count()).select_from(InboxMessage)
        if "category" in where:
            q = q.where(InboxMessage.category == where["category"])
        return await s.scalar(q) or 0


async def wait_rows(svc, n: int, timeout: float = 120.0, **where) -> float:
    """Seconds until at least n rows exist (polling every 20 ms)."""
    started = time.monotonic()
    seen = 0
    while seen < n:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"only {seen} of {n} inbox rows after {timeout}s")
        try:
            seen = await count_rows(svc, **where)
        except (OSError, DBAPIError):  # a shared PostgreSQL restarted by someone else: keep polling
            await asyncio.sleep(0.5)
            continue
        if seen < n:
            await asyncio.sleep(0.02)
    return time.monotonic() - started


async def bare_bulk_insert(svc, n: int) -> float:
    """Baseline: seconds for one bulk INSERT of n inbox rows of the same shape, then removing them again."""
    now = datetime.now(UTC)
    rows = [{"id": new_id(), "notification_id": None, "recipient": f"baseline-{i}", "category": "baseline",
             "priority": "normal", "title": "报名成功：2026 集成电路产教融合专场招聘会",
             "body": "您已成功报名“2026 集成电路产教融合专场招聘会”。", "event_id": f"baseline-{i}",
             "event_type": f"{PREFIX}.events.registration.confirmed", "subject": f"r-{i}", "data": {"k": i},
             "created_at": now, "read_at": None, "archived_at": None} for i in range(n)]
    async with svc.runtime.sessions() as s, s.begin():
        started = time.monotonic()
        await s.execute(insert(InboxMessage.__table__), rows)
    elapsed = time.monotonic() - started
    async with svc.runtime.sessions() as s, s.begin():
        await s.execute(delete(InboxMessage).where(InboxMessage.category == "baseline"))
    return elapsed


async def run(ctx: BenchContext) -> dict:
    """Run both measurements and print them beside their baselines."""
    async with run_service(notify.main.create_app, Settings, broker=ctx.broker, db_url=await ctx.database("notify"),
                           log_json=False, log_level="WARNING", dispatch_interval_seconds=0.05,
                           plan_batch_size=1000) as svc:
        # 1. throughput: N events (plus duplicates of 10% of them) -> N inbox rows
        events = []
        for i in range(N_EVENTS):
            reg = f"r-{i}"
            events.append((reg.encode(), registration_event(f"user-{i}", f"act-{i % 500}", reg)))
        dupes = events[: int(N_EVENTS * DUPLICATE_SHARE)]
        started = time.monotonic()
        produce_s = await produce_all(ctx.broker.bootstrap, "events.registration.v1", events + dupes)
        await wait_rows(svc, N_EVENTS, category="registration")
        e2e = time.monotonic() - started
        await asyncio.sleep(1.0)
        extra = await count_rows(svc, category="registration") - N_EVENTS
        rate = N_EVENTS / e2e
        baseline = await bare_bulk_insert(svc, N_EVENTS)

        # 2. fan-out: 10,000 registrants of one activity, then one cancellation
        act = "act-fanout"
        regs = [(act.encode(), registration_event(f"fan-{i}", act, f"fan-r-{i}")) for i in range(FAN_OUT)]
        await produce_all(ctx.broker.bootstrap, "events.registration.v1", regs)
        await wait_rows(svc, N_EVENTS + FAN_OUT, category="registration")
        cancel = CloudEvent(
            id=str(uuid.uuid4()), source="//platform.cjrh.sh.cn/events", type=f"{PREFIX}.events.activity.cancelled",
            subject=act, time=datetime.now(UTC),
            data={"id": act, "kind": "job_fair", "title_zh": "2026 集成电路产教融合专场招聘会",
                  "organiser_id": "inst-o",
                  "starts_at": "2026-05-20T06:00:00+00:00", "ends_at": None, "status": "cancelled", "version": 9},
        ).to_bytes()
        started = time.monotonic()
        await produce_all(ctx.broker.bootstrap, "events.activity.v1", [(act.encode(), cancel)])
        fan_s = await wait_rows(svc, FAN_OUT + 1, category="cancellation")
        fan_e2e = time.monotonic() - started
        fan_baseline = await bare_bulk_insert(svc, FAN_OUT)

    table([
        ("events -> inbox rows (idempotent)", f"{N_EVENTS:,} (+{len(dupes):,} dupes)", f"{e2e:.2f} s",
         f"{rate:,.0f} rows/s", "target >= 3,000/s"),
        ("  baseline: bare bulk INSERT", f"{N_EVENTS:,}", f"{baseline:.2f} s", f"{N_EVENTS / baseline:,.0f} rows/s",
         ""),
        ("cancellation fan-out", f"{FAN_OUT:,} + organiser", f"{fan_e2e:.2f} s",
         f"{(FAN_OUT + 1) / fan_e2e:,.0f} rows/s", "target < 5 s"),
        ("  baseline: bare bulk INSERT", f"{FAN_OUT:,}", f"{fan_baseline:.2f} s",
         f"{FAN_OUT / fan_baseline:,.0f} rows/s", ""),
    ], ("measure", "rows", "time", "rate", "target"))
    print(f"producing {len(events) + len(dupes):,} events took {produce_s:.2f} s (inside the end-to-end time); "
          f"rows beyond one per event after duplicates: {extra}", flush=True)
    return {
        "events": N_EVENTS, "duplicates_sent": len(dupes), "extra_rows_from_duplicates": extra,
        "end_to_end_seconds": round(e2e, 3), "inbox_rows_per_second": round(rate),
        "produce_seconds": round(produce_s, 3), "baseline_bulk_insert_seconds": round(baseline, 3),
        "baseline_rows_per_second": round(N_EVENTS / baseline),
        "fan_out_recipients": FAN_OUT + 1, "fan_out_seconds": round(fan_e2e, 3),
        "fan_out_rows_visible_after_produce_seconds": round(fan_s, 3),
        "fan_out_baseline_bulk_insert_seconds": round(fan_baseline, 3),
    }
