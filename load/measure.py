"""What is measured beside the requests: consumer lag and RSS every second, and end-to-end event latency."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer

from load.platform import Platform
from tests.support.harness import partitions_of, tooling_security


def consumer_lag(metrics_text: str) -> int:
    """Sum of every `consumer_lag` series in a Prometheus exposition."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("consumer_lag{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def rss_mb(pid: int | None) -> float | None:
    """Resident set size of a process in MiB (VmRSS from /proc), None if it is gone."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


class Sampler:
    """Every second: each service's consumer lag (from /metrics) and RSS, the broker's RSS and the load average."""

    def __init__(self, platform: Platform, t0: float) -> None:
        self.platform = platform
        self.t0 = t0  # time.perf_counter() at the start of the load
        self.rows: list[dict] = []
        self._stop = asyncio.Event()

    async def run(self) -> None:
        """Sample until `stop`."""
        async with httpx.AsyncClient(timeout=0.8) as http:
            while not self._stop.is_set():
                tick = time.perf_counter()
                row: dict = {"t": round(tick - self.t0, 2), "lag": {}, "rss_mb": {},
                             "loadavg_1m": round(os.getloadavg()[0], 2)}

                async def scrape(name: str, proc, row: dict = row) -> None:
                    try:
                        r = await http.get(f"{proc.url}/metrics")
                        row["lag"][name] = consumer_lag(r.text) if r.status_code == 200 else None
                    except httpx.HTTPError:
                        row["lag"][name] = None

                await asyncio.gather(*(scrape(n, p) for n, p in self.platform.procs.items()))
                for name, proc in self.platform.procs.items():
                    alive = proc.proc is not None and proc.proc.poll() is None
                    row["rss_mb"][name] = rss_mb(proc.proc.pid) if alive else None
                row["rss_mb"]["broker"] = rss_mb(self.platform.broker_pid())
                self.rows.append(row)
                try:
                    await asyncio.wait_for(self._stop.wait(), max(0.05, 1.0 - (time.perf_counter() - tick)))
                except TimeoutError:
                    pass

    def stop(self) -> None:
        """Stop after the current sample."""
        self._stop.set()

    def lag_now(self) -> int | None:
        """Total lag in the latest sample (None while any service does not answer)."""
        if not self.rows:
            return None
        values = list(self.rows[-1]["lag"].values())
        return None if any(v is None for v in values) else sum(values)


async def read_to_end(bootstrap: str, topic: str) -> list:
    """Every record on `topic` up to its end offsets at the time of the call (no consumer group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                **tooling_security(bootstrap).client_kwargs())
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                break
            for msgs in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(msgs)
        return records
    finally:
        await consumer.stop()


def _epoch(ts: datetime) -> float:
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


async def _applied(db_url: str, topic: str, event_ids: list[str]) -> dict[str, float]:
    """When a service's consumers first recorded each event id (processed_events.processed_at, epoch seconds)."""
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT event_id, min(processed_at) AS at FROM processed_events "
                                "WHERE topic = $1 AND event_id = ANY($2::text[]) GROUP BY event_id", topic, event_ids)
    finally:
        await conn.close()
    return {r["event_id"]: _epoch(r["at"]) for r in rows}


def _latencies(acked: list, applied: dict) -> dict[str, list[tuple[float, float | None]]]:
    """(t, latency or None) per acknowledged action, measured from its answer and from its request."""
    return {
        "from_answer": [(t, applied[k] - answered if k in applied else None) for k, _, answered, t in acked],
        "from_request": [(t, applied[k] - sent if k in applied else None) for k, sent, _, t in acked],
    }


async def end_to_end(platform: Platform, workload) -> dict[str, dict[str, list[tuple[float, float | None]]]]:
    """Per path, (seconds from start, latency in seconds or None if never applied) for each acknowledged action,
    measured from the moment the generator saw the answer and from the moment it sent the request.

    registry PATCH 200 -> matching applied the institution event (its id read from the topic by key and version);
    registration 201 -> notify's inbox row for the registrant; municipal record produced -> registry applied it
    (for a Kafka record the "answer" is the broker's acknowledgement).
    """
    records = await read_to_end(platform.broker.bootstrap, "registry.institution.v1")
    event_of: dict[tuple[str, int], str] = {}
    for r in records:
        doc = orjson.loads(r.value)
        event_of[(r.key.decode(), int(doc["data"]["version"]))] = doc["id"]
    applied = await _applied(platform.dbs["matching"], "registry.institution.v1",
                             [event_of[k] for k, _, _, _ in workload.patched if k in event_of])
    applied_by_key = {k: applied[e] for k, e in event_of.items() if e in applied}

    conn = await asyncpg.connect(platform.dbs["notify"])
    try:
        rows = await conn.fetch("SELECT subject, min(created_at) AS at FROM inbox_messages "
                                "WHERE subject = ANY($1::text[]) GROUP BY subject",
                                [reg for reg, _, _, _ in workload.registered])
    finally:
        await conn.close()
    inbox = {r["subject"]: _epoch(r["at"]) for r in rows}
    municipal = await _applied(platform.dbs["registry"], "municipal.enterprise.v1",
                               [e for e, _, _, _ in workload.municipal])
    return {"registry PATCH -> matching projection applied": _latencies(workload.patched, applied_by_key),
            "registration 201 -> notify inbox row": _latencies(workload.registered, inbox),
            "municipal record produced -> registry applied": _latencies(workload.municipal, municipal)}
