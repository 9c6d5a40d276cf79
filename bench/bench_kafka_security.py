"""What TLS + SASL/SCRAM-SHA-512 + ACLs cost: the same Kafka workloads on a secured and a plaintext broker.

Both brokers run side by side in the same run with the same JVM settings (scripts/broker.py; the plaintext one with
`--insecure`, as nothing the platform ships runs). On the secured broker the client is an ordinary principal with
ACLs (prefixed topic and group rights, as a platform or service would have), not the super user whose requests skip
the authoriser. Figures, plaintext beside SASL_SSL, rounds alternating between the two:

1. connect: an idempotent producer's start (bootstrap, TLS handshake, SCRAM exchange, metadata, producer id);
2. produce: N messages of SIZE bytes with the services' producer settings (idempotent, acks=all, linger 1 ms);
3. consume: the same N messages read back from the beginning (no group);
4. latency: produce -> consume at RATE messages/s (send_and_wait per message, a group consumer reading).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from bench.support import BenchContext, summary_ms, table
from common import kafka_admin
from common.kafka import PLAINTEXT, KafkaSecurity
from common.outbox import producer_for
from common.service import ensure_topics
from tests.support.harness import BROKER, free_port, partitions_of

N_MESSAGES = int(os.environ.get("BENCH_KAFKA_SECURITY_MESSAGES", "20000"))
SIZE = 512
ROUNDS = int(os.environ.get("BENCH_KAFKA_SECURITY_ROUNDS", "3"))
RATE = 200
SECONDS = float(os.environ.get("BENCH_KAFKA_SECURITY_SECONDS", "5"))
PRINCIPAL = "bench-sec"
PREFIX = f"{PRINCIPAL}."


async def _bench_principal(ctx: BenchContext) -> KafkaSecurity:
    """A non-super principal on the secured broker, allowed topics and groups named `bench-sec.*`."""
    admin_sec = ctx.broker.admin
    password = secrets.token_urlsafe(16)
    admin = AIOKafkaAdminClient(bootstrap_servers=ctx.broker.bootstrap, **admin_sec.client_kwargs())
    await admin.start()
    try:
        await kafka_admin.upsert_scram(admin, {PRINCIPAL: password})
        acls = [SimpleNamespace(principal=PRINCIPAL, resource="topic", name=PREFIX, pattern="prefix", operation=op)
                for op in ("Read", "Write", "Describe")]
        acls += [SimpleNamespace(principal=PRINCIPAL, resource="group", name=PREFIX, pattern="prefix",
                                 operation="Read"),
                 SimpleNamespace(principal=PRINCIPAL, resource="cluster", name="kafka-cluster", pattern="literal",
                                 operation="IdempotentWrite")]
        await kafka_admin.create_acls(admin, acls)
    finally:
        await admin.close()
    return KafkaSecurity(username=PRINCIPAL, password=password, cafile=admin_sec.cafile)


async def _connect(bootstrap: str, security: KafkaSecurity) -> float:
    producer = producer_for(bootstrap, client_id="bench-connect", security=security)
    started = time.perf_counter()
    await producer.start()
    took = time.perf_counter() - started
    await producer.stop()
    return took


async def _produce_consume(bootstrap: str, security: KafkaSecurity, admin: KafkaSecurity) -> tuple[float, float]:
    """Seconds to produce N messages, and to read them back."""
    topic = f"{PREFIX}{uuid.uuid4().hex[:8]}.v1"
    await ensure_topics(bootstrap, [topic], partitions=3, security=admin)
    payload = os.urandom(SIZE // 2).hex().encode()
    producer = producer_for(bootstrap, client_id="bench-produce", security=security)
    await producer.start()
    started = time.perf_counter()
    futures = [await producer.send(topic, value=payload, key=str(i % 100).encode()) for i in range(N_MESSAGES)]
    await asyncio.gather(*futures)
    produce_s = time.perf_counter() - started
    await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024, **security.client_kwargs())
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started = time.perf_counter()
        seen = 0
        while seen < N_MESSAGES:
            for msgs in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                seen += len(msgs)
        consume_s = time.perf_counter() - started
    finally:
        await consumer.stop()
    return produce_s, consume_s


async def _latency(bootstrap: str, security: KafkaSecurity, admin: KafkaSecurity) -> list[float]:
    topic = f"{PREFIX}{uuid.uuid4().hex[:8]}.v1"
    await ensure_topics(bootstrap, [topic], partitions=3, security=admin)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"{PREFIX}{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", fetch_max_wait_ms=5, **security.client_kwargs())
    await consumer.start()
    await consumer.getmany(timeout_ms=1000)
    producer = producer_for(bootstrap, client_id="bench-latency", security=security)
    await producer.start()
    n = int(RATE * SECONDS)
    sent_at: dict[int, float] = {}
    latencies: list[float] = []

    async def consume():
        while len(latencies) < n:
            for msgs in (await consumer.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                latencies.extend(now - sent_at[int(m.value)] for m in msgs)

    reader = asyncio.create_task(consume())

    async def fire(i: int):
        sent_at[i] = time.perf_counter()
        await producer.send_and_wait(topic, value=str(i).encode(), key=str(i % 50).encode())

    start = time.perf_counter()
    tasks = []
    for i in range(n):
        delay = start + i / RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(i)))
    await asyncio.gather(*tasks)
    await asyncio.wait_for(reader, 60)
    await producer.stop()
    await consumer.stop()
    return latencies


def _start_plaintext_broker(data: Path) -> str:
    port = free_port()
    subprocess.run([sys.executable, str(BROKER), "start", "--insecure", "--data", str(data), "--port", str(port)],
                   check=True)
    return f"127.0.0.1:{port}"


async def run(ctx: BenchContext) -> dict:
    """Measure plaintext and SASL_SSL side by side; print and return the figures."""
    if ctx.broker.credentials is None:
        print("bench kafka_security: needs the secured broker this run starts (unset KAFKA_BOOTSTRAP_SERVERS)")
        return {"skipped": "outside broker"}
    with tempfile.TemporaryDirectory() as tmp:
        plain_bootstrap = await asyncio.to_thread(_start_plaintext_broker, Path(tmp) / "plain")
        try:
            return await _measure(ctx, plain_bootstrap)
        finally:
            await asyncio.to_thread(subprocess.run, [sys.executable, str(BROKER), "stop", "--data",
                                                     str(Path(tmp) / "plain")], check=False, capture_output=True)


async def _measure(ctx: BenchContext, plain_bootstrap: str) -> dict:
    secured = await _bench_principal(ctx)
    sides = {"PLAINTEXT": (plain_bootstrap, PLAINTEXT, PLAINTEXT),
             "SASL_SSL": (ctx.broker.bootstrap, secured, ctx.broker.admin)}
    connect = {k: [] for k in sides}
    produce = {k: [] for k in sides}
    consume = {k: [] for k in sides}
    for _ in range(ROUNDS):  # alternate, so drift on a shared machine hits both sides alike
        for name, (bootstrap, security, admin) in sides.items():
            for _ in range(3):
                connect[name].append(await _connect(bootstrap, security))
            p, c = await _produce_consume(bootstrap, security, admin)
            produce[name].append(p)
            consume[name].append(c)
    latency = {name: summary_ms(await _latency(bootstrap, security, admin))
               for name, (bootstrap, security, admin) in sides.items()}

    def rate(samples: list[float]) -> float:
        return N_MESSAGES / statistics.median(samples)

    base = "PLAINTEXT"
    rows = []
    for name in sides:
        rows.append((name, f"{statistics.median(connect[name]) * 1000:.0f}", f"{rate(produce[name]):,.0f}",
                     f"{100 * rate(produce[name]) / rate(produce[base]):.0f}%", f"{rate(consume[name]):,.0f}",
                     f"{100 * rate(consume[name]) / rate(consume[base]):.0f}%", latency[name]["p50_ms"],
                     latency[name]["p99_ms"]))
    table(rows, ("listener", "connect ms", "produce msg/s", "vs plain", "consume msg/s", "vs plain",
                 f"p50 ms @{RATE}/s", "p99 ms"))
    print(f"({N_MESSAGES} messages of {SIZE} bytes per round, median of {ROUNDS} rounds; connect: median of "
          f"{3 * ROUNDS} producer starts)", flush=True)
    return {
        "messages": N_MESSAGES, "message_bytes": SIZE, "rounds": ROUNDS, "latency_rate_per_s": RATE,
        "sides": {name: {"connect_ms": round(statistics.median(connect[name]) * 1000, 1),
                         "produce_msgs_per_s": round(rate(produce[name])),
                         "consume_msgs_per_s": round(rate(consume[name])),
                         "latency": latency[name],
                         "per_round_seconds": [{"produce": round(p, 3), "consume": round(c, 3)}
                                               for p, c in zip(produce[name], consume[name])]}
                  for name in sides},
        "sasl_ssl_vs_plaintext": {
            "produce": round(rate(produce["SASL_SSL"]) / rate(produce[base]), 3),
            "consume": round(rate(consume["SASL_SSL"]) / rate(consume[base]), 3),
        },
    }
