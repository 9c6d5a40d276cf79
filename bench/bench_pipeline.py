"""The event pipeline: outbox relay throughput vs a raw producer, and end-to-end latency HTTP write -> consumed.

1. Relay throughput: N outbox rows (PostgreSQL) published by `OutboxRelay` vs the same N messages sent by a raw
   aiokafka producer with the same settings (idempotent, acks=all), both to fresh topics on the same broker.
2. End-to-end latency at a fixed open-loop rate: registry and matching run as real uvicorn processes on PostgreSQL,
   laid out as they are deployed (registry: an API process and a worker process that runs the outbox relay, woken by
   NOTIFY on commit; matching: one process); the bench POSTs institutions to registry at RATE writes/s and measures,
   per write, from the HTTP response to the moment matching's consumer applied the event (its
   processed_events.processed_at). Baseline in the same run: raw Kafka produce -> consume latency at the same rate on
   the same broker.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer
from sqlalchemy import insert

from bench.support import BenchContext, summary_ms, table
from common.config import ServiceSettings
from common.events import CloudEvent
from common.outbox import producer_for
from common.service import ensure_topics
from tests.support.harness import current_group_suffix, read_topic, token
from tests.support.loadgen import LoadClient, collector_paused
from tests.support.processes import ServiceProcess, isolate_groups, service_env
from tests.support.scratch import Scratch, WidgetPayload, new_topic, outbox

N_MESSAGES = int(os.environ.get("BENCH_PIPELINE_MESSAGES", "20000"))
RATE = int(os.environ.get("BENCH_PIPELINE_RATE", "200"))
SECONDS = float(os.environ.get("BENCH_PIPELINE_SECONDS", "10"))
WARMUP_SECONDS = 3
WARMUP_OFFSET = 5_000_000  # USCC serial numbers of the warm-up writes, apart from the measured ones


def _uscc(i: int) -> str:
    from registry.domain import uscc_check_char

    first17 = f"9131011500{i:07d}"
    return first17 + uscc_check_char(first17)


async def _one_round(ctx: BenchContext, events: list[tuple[str, str, bytes]]) -> tuple[float, float]:
    """Seconds for the raw producer and for the relay to publish the same messages (fresh topics, fresh database)."""
    bootstrap = ctx.broker.bootstrap
    raw_topic, relay_topic = new_topic(), new_topic()
    await ensure_topics(bootstrap, [raw_topic, relay_topic], partitions=3, security=ctx.broker.admin)
    raw = producer_for(bootstrap, client_id="bench-raw", security=ctx.broker.admin)
    await raw.start()
    started = time.perf_counter()
    futures = [await raw.send(raw_topic, value=payload, key=wid.encode()) for wid, _, payload in events]
    await asyncio.gather(*futures)
    raw_s = time.perf_counter() - started
    await raw.stop()

    scratch = Scratch(await ctx.database("bench_relay"), bootstrap)
    await scratch.create()
    await scratch.producer.start()
    scratch.relay.batch_size = ServiceSettings().outbox_batch_size  # the services' default
    async with scratch.sessions() as session, session.begin():
        for i in range(0, len(events), 5000):
            await session.execute(insert(outbox), [
                {"event_id": eid, "topic": relay_topic, "key": wid, "event_type": "cn.gov.sh.cjrh.scratch.widget.made",
                 "payload": payload, "created_at": datetime.now(UTC), "attempts": 0}
                for wid, eid, payload in events[i:i + 5000]
            ])
    started = time.perf_counter()
    sent = 0
    while sent < len(events):
        sent += await scratch.relay.publish_pending()
    relay_s = time.perf_counter() - started
    await scratch.close()
    return raw_s, relay_s


async def relay_vs_raw(ctx: BenchContext, rounds: int = 3) -> dict:
    """Publish N messages through the outbox relay and through a raw producer, alternating; median msg/s of each."""
    events = []
    for i in range(N_MESSAGES):
        wid = str(uuid.uuid4())
        ev = CloudEvent(id=str(uuid.uuid4()), source="//bench", type="cn.gov.sh.cjrh.scratch.widget.made",
                        subject=wid, time=datetime.now(UTC), data=WidgetPayload(id=wid, name=f"w{i}").model_dump())
        events.append((wid, ev.id, ev.to_bytes()))
    results = [await _one_round(ctx, events) for _ in range(rounds)]
    raw_s = statistics.median(r[0] for r in results)
    relay_s = statistics.median(r[1] for r in results)
    raw_rate, relay_rate = N_MESSAGES / raw_s, N_MESSAGES / relay_s
    table([
        ("raw aiokafka producer", N_MESSAGES, f"{raw_s:.2f}", f"{raw_rate:,.0f}", "100%"),
        ("outbox relay (PostgreSQL)", N_MESSAGES, f"{relay_s:.2f}", f"{relay_rate:,.0f}",
         f"{100 * relay_rate / raw_rate:.0f}%"),
    ], (f"publisher (median of {rounds})", "messages", "seconds", "msg/s", "vs raw"))
    return {"messages": N_MESSAGES, "rounds": rounds, "raw_msgs_per_s": round(raw_rate),
            "relay_msgs_per_s": round(relay_rate), "relay_vs_raw": round(relay_rate / raw_rate, 3),
            "per_round_seconds": [{"raw": round(a, 3), "relay": round(b, 3)} for a, b in results], "target": ">= 0.5"}


async def _open_loop(rate: int, seconds: float, fire) -> None:
    """Call `fire(i)` at a fixed rate (open loop: a slow call never delays the next one)."""
    n = int(rate * seconds)
    with collector_paused():
        start = time.perf_counter()
        tasks = []
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(fire(i)))
        await asyncio.gather(*tasks)


async def raw_kafka_latency(ctx: BenchContext) -> dict:
    """Baseline: raw produce -> consume latency at RATE msgs/s."""
    bootstrap = ctx.broker.bootstrap
    topic = new_topic()
    await ensure_topics(bootstrap, [topic], partitions=3, security=ctx.broker.admin)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", enable_auto_commit=True,
                                **ctx.broker.admin.client_kwargs())
    await consumer.start()
    await consumer.getmany(timeout_ms=1000)
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    n = int(RATE * SECONDS)

    async def consume():
        while len(latencies) < n:
            for msgs in (await consumer.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                for m in msgs:
                    latencies.append(now - sent_at[int(m.value)])

    producer = producer_for(bootstrap, client_id="bench-latency", security=ctx.broker.admin)
    await producer.start()
    reader = asyncio.create_task(consume())

    async def fire(i: int):
        sent_at[i] = time.perf_counter()
        await producer.send_and_wait(topic, value=str(i).encode(), key=str(i % 50).encode())

    await _open_loop(RATE, SECONDS, fire)
    await asyncio.wait_for(reader, 60)
    await producer.stop()
    await consumer.stop()
    return summary_ms(latencies)


async def _start_services(ctx: BenchContext, reg_db: str, mat_db: str) -> list[ServiceProcess]:
    """registry API + registry worker + matching, as processes; each is alive (migrated) before the next starts."""
    bootstrap = ctx.broker.bootstrap
    for service in ("registry", "matching"):
        await isolate_groups(service, bootstrap=bootstrap, suffix=current_group_suffix.get())
    logs = Path(tempfile.gettempdir())
    procs = [
        ServiceProcess("registry", "api", service_env("registry", db_url=reg_db, bootstrap=bootstrap,
                                                      run_workers=False), log=logs / "bench-pipeline-registry-api.log"),
        ServiceProcess("registry", "worker", service_env("registry", db_url=reg_db, bootstrap=bootstrap,
                                                         run_workers=True, REGISTRY_RUN_MIGRATIONS="false"),
                       log=logs / "bench-pipeline-registry-worker.log"),
        ServiceProcess("matching", "all", service_env("matching", db_url=mat_db, bootstrap=bootstrap,
                                                      run_workers=True), log=logs / "bench-pipeline-matching.log"),
    ]
    try:
        for p in procs:
            p.start()
            await asyncio.to_thread(p.wait_alive, 120)
    except BaseException:
        for p in procs:
            p.stop()
        raise
    return procs


async def _applied(mat_db: str, bootstrap: str, ids: set[str], timeout: float = 120) -> None:
    """Wait until matching has applied the registration events of these institutions."""
    conn = await asyncpg.connect(mat_db)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            known = await conn.fetchval("SELECT count(*) FROM institution_view WHERE id = ANY($1::text[])", list(ids))
            if known >= len(ids):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"matching applied {known} of {len(ids)} warm-up events in {timeout}s")
    finally:
        await conn.close()


async def end_to_end(ctx: BenchContext) -> dict:
    """HTTP POST to registry returns -> matching applied the event, at RATE writes/s."""
    reg_db, mat_db = await ctx.database("bench_registry"), await ctx.database("bench_matching")
    procs = await _start_services(ctx, reg_db, mat_db)
    reg_port, mat_port = procs[0].port, procs[2].port
    headers = {"Authorization": f"Bearer {token('office_admin')}"}
    try:
        async with httpx.AsyncClient(timeout=30) as http, LoadClient() as load:
            for port in (reg_port, procs[1].port, mat_port):
                deadline = time.monotonic() + 120
                while True:
                    try:
                        if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"service on {port} not ready")
                    await asyncio.sleep(0.3)
            # warm-up: one write must reach matching before measuring (consumer group joined, pools open)
            warm = await http.post(f"http://127.0.0.1:{reg_port}/institutions", headers=headers,
                                   json={"kind": "enterprise", "name_zh": "预热企业", "uscc": _uscc(9_999_999),
                                         "district": "lingang"})
            warm.raise_for_status()
            wid = warm.json()["id"]
            deadline = time.monotonic() + 60
            while (await http.get(f"http://127.0.0.1:{mat_port}/institutions/{wid}")).status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("warm-up event never reached matching")
                await asyncio.sleep(0.1)

            returned: dict[str, float] = {}
            sent_at: dict[str, float] = {}
            errors = 0

            url = f"http://127.0.0.1:{reg_port}/institutions"

            async def fire(i: int):
                nonlocal errors
                body = {"kind": "enterprise", "name_zh": f"压测企业{i}", "uscc": _uscc(i), "district": "pudong"}
                started = time.time()
                try:
                    r = await load.post(url, json=body, headers=headers)
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                    return
                if r.status_code != 201:
                    errors += 1
                    return
                wid = r.json()["id"]
                returned[wid] = time.time()
                sent_at[wid] = started

            # Warm-up at the measured rate (pools filled, statements prepared on every connection, caches hot), then
            # a pause until matching caught up: the figures below describe the steady state, not the cold start.
            await _open_loop(RATE, WARMUP_SECONDS, lambda i: fire(WARMUP_OFFSET + i))
            warm_ids = set(returned)
            await _applied(mat_db, ctx.broker.bootstrap, warm_ids)
            returned.clear()
            sent_at.clear()
            await _open_loop(RATE, SECONDS, fire)

        records = await read_topic(ctx.broker.bootstrap, "registry.institution.v1",
                                   until=lambda rs: len({r.key for r in rs} & {k.encode() for k in returned})
                                   >= len(returned), timeout=120)
        event_of = {r.key.decode(): CloudEvent.from_bytes(r.value).id for r in records}
        on_kafka = {r.key.decode(): r.timestamp / 1000 for r in records}  # the producer's send time (CreateTime)
        conn = await asyncpg.connect(mat_db)
        try:
            deadline = time.monotonic() + 120
            while True:
                rows = await conn.fetch("SELECT event_id, processed_at FROM processed_events")
                applied = {r["event_id"]: r["processed_at"].timestamp() for r in rows}
                if all(event_of[k] in applied for k in returned) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
        finally:
            await conn.close()
        latencies = [applied[event_of[k]] - t for k, t in returned.items() if event_of[k] in applied]
        from_request = [applied[event_of[k]] - sent_at[k] for k in returned if event_of[k] in applied]
        http = [returned[k] - sent_at[k] for k in returned]
        missing = len(returned) - len(latencies)
        # Where the time goes: commit -> the relay sent it (201 seen -> record timestamp) and sent -> applied.
        relay = [on_kafka[k] - t for k, t in returned.items() if k in on_kafka]
        consume = [applied[event_of[k]] - on_kafka[k] for k in returned if event_of[k] in applied and k in on_kafka]
        # "returned" is when this client saw the 201; under load that can come after matching already applied the
        # event (a negative latency), so the figure from the request's start is printed beside it.
        return {**summary_ms(latencies), "writes": len(returned), "http_errors": errors, "not_consumed": missing,
                "from_request_start": summary_ms(from_request), "http_response": summary_ms(http),
                "to_relay_send": summary_ms(relay), "relay_send_to_applied": summary_ms(consume)}
    finally:
        for p in procs:
            p.stop()


async def run(ctx: BenchContext) -> dict:
    """Run both pipeline benchmarks and print their figures."""
    print(f"-- outbox relay vs raw producer ({N_MESSAGES:,} messages)", flush=True)
    throughput = await relay_vs_raw(ctx)
    print(f"\n-- end-to-end latency at {RATE} writes/s for {SECONDS:.0f}s "
          "(registry HTTP 201 -> matching applied; both real processes on PostgreSQL)", flush=True)
    baseline = await raw_kafka_latency(ctx)
    e2e = await end_to_end(ctx)
    table([
        ("raw Kafka produce -> consume (baseline)", baseline["n"], baseline["p50_ms"], baseline["p99_ms"], "", ""),
        ("registry 201 seen by client -> matching applied", e2e["n"], e2e["p50_ms"], e2e["p99_ms"],
         e2e["http_errors"], e2e["not_consumed"]),
        ("registry request sent -> matching applied", e2e["from_request_start"]["n"],
         e2e["from_request_start"]["p50_ms"], e2e["from_request_start"]["p99_ms"], "", ""),
        ("  baseline: registry request -> 201 (HTTP only)", e2e["http_response"]["n"],
         e2e["http_response"]["p50_ms"], e2e["http_response"]["p99_ms"], "", ""),
        ("  part: 201 seen -> the relay sent the event", e2e["to_relay_send"]["n"],
         e2e["to_relay_send"]["p50_ms"], e2e["to_relay_send"]["p99_ms"], "", ""),
        ("  part: relay sent -> matching applied", e2e["relay_send_to_applied"]["n"],
         e2e["relay_send_to_applied"]["p50_ms"], e2e["relay_send_to_applied"]["p99_ms"], "", ""),
    ], ("path", "n", "p50 ms", "p99 ms", "http errors", "lost"))
    return {"relay_throughput": throughput, "latency_rate_per_s": RATE, "latency_seconds": SECONDS,
            "raw_kafka_latency": baseline, "end_to_end_latency": e2e, "target_e2e_p99_ms": 100}
