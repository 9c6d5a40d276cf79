"""Faults under a steady workload: nothing acknowledged is lost, nothing is duplicated where anyone can see it.

Registry (API and worker as separate processes), matching and notify run as real uvicorn processes on PostgreSQL.
While a client writes institutions to registry at a steady rate, the broker is stopped for 30 s, processes are killed
with SIGKILL at chosen moments and restarted, and PostgreSQL is restarted. Afterwards a checker counts, per
acknowledged write: events on `registry.institution.v1` (exactly one event id), matching's projection row and the
office's inbox message in notify (exactly one each); HTTP answers other than 201, 503-with-Retry-After and connection
errors while a process was down are violations.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import asyncpg
import httpx
import pytest

from common.events import CloudEvent
from registry.domain import uscc_check_char
from tests.support.harness import PG, current_group_suffix, fresh_database, produce, read_topic, token
from tests.support.poison import KINDS, enterprise_poison, enterprise_record
from tests.support.processes import ServiceProcess, isolate_groups, service_env

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]

RATE = float(os.environ.get("CHAOS_RATE", "25"))
DURATION = float(os.environ.get("CHAOS_SECONDS", "70"))
BROKER_OUTAGE = float(os.environ.get("CHAOS_BROKER_OUTAGE", "30"))


def _uscc(i: int) -> str:
    first17 = f"9131011700{i:07d}"
    return first17 + uscc_check_char(first17)


def _restart_postgres() -> bool:
    """Restart the checkout's PostgreSQL (not a server named by TEST_PG_URL, which is not ours to restart)."""
    if os.environ.get("TEST_PG_URL"):
        return False
    subprocess.run([sys.executable, str(PG), "restart"], check=True, capture_output=True)
    return True


class Workload:
    """Writes institutions at a steady rate and classifies every answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.acknowledged: dict[str, int] = {}
        self.acknowledged_at: list[float] = []
        self.unknown: list[int] = []
        self.statuses: Counter[str] = Counter()
        self.violations: list[str] = []
        self.headers = {"Authorization": f"Bearer {token('office_admin')}"}

    async def write(self, http: httpx.AsyncClient, i: int) -> None:
        body = {"kind": "enterprise", "name_zh": f"混沌测试企业{i:05d}", "uscc": _uscc(i), "district": "lingang"}
        try:
            r = await http.post(f"{self.url}/institutions", json=body, headers=self.headers)
        except httpx.HTTPError as exc:
            self.statuses[f"connection:{exc.__class__.__name__}"] += 1
            self.unknown.append(i)
            return
        self.statuses[str(r.status_code)] += 1
        if r.status_code == 201:
            self.acknowledged[r.json()["id"]] = i
            self.acknowledged_at.append(time.monotonic())
        elif r.status_code == 503 and "retry-after" in r.headers:
            self.unknown.append(i)  # refused while the database was away; the client may retry later
        else:
            self.violations.append(f"write {i}: {r.status_code} {r.text[:200]}")

    async def run(self, seconds: float) -> None:
        start = time.perf_counter()
        tasks = []
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=50)
        async with httpx.AsyncClient(timeout=15, limits=limits) as http:
            for i in range(int(seconds * RATE)):
                delay = start + i / RATE - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(self.write(http, i)))
            await asyncio.gather(*tasks)


POISON_PER_KIND = int(os.environ.get("CHAOS_POISON_PER_KIND", "100"))


async def _feed_inbound(bootstrap: str, poison: list[bytes], valid: list[bytes], broker_back: asyncio.Event) -> None:
    """Interleave poison and valid municipal records on the inbound topic, in bursts, once the broker is back."""
    await broker_back.wait()
    mixed = []
    for i, raw in enumerate(poison):
        mixed.append(raw)
        if i % (len(poison) // max(1, len(valid))) == 0 and valid:
            mixed.append(valid.pop())
    mixed += valid
    for start in range(0, len(mixed), 100):
        await produce(bootstrap, "municipal.enterprise.v1", mixed[start:start + 100], key=None)
        await asyncio.sleep(2)


async def _faults(broker, procs: dict[str, ServiceProcess], log: list[str], windows: dict) -> None:
    t0 = time.monotonic()

    async def at(second: float) -> None:
        await asyncio.sleep(max(0.0, t0 + second - time.monotonic()))

    def note(what: str) -> None:
        log.append(f"t={time.monotonic() - t0:5.1f}s {what}")

    async def bounce(name: str) -> None:
        procs[name].kill9()
        note(f"kill -9 {name}")
        await asyncio.sleep(1.0)
        procs[name].restart()
        await asyncio.to_thread(procs[name].wait_alive)
        note(f"{name} back")

    await at(4)
    await asyncio.to_thread(broker.stop)
    windows["broker_down"] = [time.monotonic(), None]
    note("broker stopped")
    await at(10)
    await bounce("registry-api")
    await at(18)
    await bounce("matching")
    await at(4 + BROKER_OUTAGE)
    windows["broker_down"][1] = time.monotonic()
    await asyncio.to_thread(broker.start)
    windows["broker_back"].set()
    note("broker started")
    await at(40)
    await bounce("registry-worker")
    await at(44)
    await bounce("notify")
    await at(50)
    if await asyncio.to_thread(_restart_postgres):
        note("PostgreSQL restarted")
    await at(58)
    await bounce("registry-worker")
    await at(62)
    await bounce("matching")


async def test_faults_lose_nothing_and_duplicate_nothing_visible(broker, tmp_path: Path):
    if not broker.owned:
        pytest.skip("needs a broker this test session started")
    dbs = {s: await fresh_database(s) for s in ("registry", "matching", "notify")}
    for s in dbs:
        await isolate_groups(s, bootstrap=broker.bootstrap, suffix=current_group_suffix.get())
    logs = tmp_path
    procs = {
        "registry-api": ServiceProcess("registry", "api", service_env(
            "registry", db_url=dbs["registry"], bootstrap=broker.bootstrap, run_workers=False), logs / "reg-api.log"),
        "registry-worker": ServiceProcess("registry", "worker", service_env(
            "registry", db_url=dbs["registry"], bootstrap=broker.bootstrap, run_workers=True,
            REGISTRY_RUN_MIGRATIONS="false"), logs / "reg-worker.log"),
        "matching": ServiceProcess("matching", "api+worker", service_env(
            "matching", db_url=dbs["matching"], bootstrap=broker.bootstrap, run_workers=True), logs / "matching.log"),
        "notify": ServiceProcess("notify", "api+worker", service_env(
            "notify", db_url=dbs["notify"], bootstrap=broker.bootstrap, run_workers=True), logs / "notify.log"),
    }
    procs["registry-api"].start()
    procs["registry-api"].wait_alive()
    for name in ("registry-worker", "matching", "notify"):
        procs[name].start()
    for p in procs.values():
        p.wait_alive()
    fault_log: list[str] = []
    windows: dict = {"broker_back": asyncio.Event()}
    workload = Workload(procs["registry-api"].url)
    poison = [enterprise_poison(i, kind, valid_uscc=_uscc(500_000 + i))
              for i, kind in enumerate(k for k in KINDS for _ in range(POISON_PER_KIND))]
    valid_usccs = [_uscc(900_000 + i) for i in range(20)]
    valid = [enterprise_record(u, f"市场监管推送企业{n}") for n, u in enumerate(valid_usccs)]
    try:
        await asyncio.gather(workload.run(DURATION), _faults(broker, procs, fault_log, windows),
                             _feed_inbound(broker.bootstrap, poison, list(valid), windows["broker_back"]))
        down_from, down_to = windows["broker_down"]
        acked_while_broker_down = sum(1 for t in workload.acknowledged_at if down_from <= t <= down_to)
        acknowledged = set(workload.acknowledged)

        # Converge: every registry row published, consumed by matching and notify.
        reg = await asyncpg.connect(dbs["registry"])
        mat = await asyncpg.connect(dbs["matching"])
        ntf = await asyncpg.connect(dbs["notify"])
        try:
            stored = {r["id"] for r in await reg.fetch(
                "SELECT id FROM institutions WHERE name_zh LIKE '混沌测试企业%'")}
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                backlog = await reg.fetchval("SELECT count(*) FROM outbox")
                in_matching = {r["id"] for r in await mat.fetch("SELECT id FROM institution_view")}
                notices = Counter(r["event_id"] for r in await ntf.fetch(
                    "SELECT event_id FROM inbox_messages WHERE recipient = 'role:office_admin' "
                    "AND event_type LIKE '%registry.institution.registered' "
                    # platform chatter reaches the office's inbox through its digest: one entry per event
                    "UNION ALL SELECT event_id FROM digest_entries WHERE recipient = 'role:office_admin' "
                    "AND channel = 'inbox'"))
                if backlog == 0 and stored <= in_matching and len(notices) >= len(stored):
                    break
                await asyncio.sleep(1.0)
        finally:
            await reg.close()
            await mat.close()
            await ntf.close()

        records = await read_topic(broker.bootstrap, "registry.institution.v1",
                                   until=lambda rs: stored <= {r.key.decode() for r in rs}, timeout=60)
        event_ids: dict[str, set[str]] = defaultdict(set)
        deliveries: Counter[str] = Counter()
        for r in records:
            key = r.key.decode()
            if key in stored:
                ev = CloudEvent.from_bytes(r.value)
                event_ids[key].add(ev.id)
                deliveries[ev.id] += 1

        group = f"registry.municipal{current_group_suffix.get()}"
        poison_set = set(poison)
        dlq = await read_topic(
            broker.bootstrap, "municipal.enterprise.v1.dlq", timeout=120,
            until=lambda rs: len({r.value for r in rs if dict(r.headers).get("dlq.consumer", b"").decode() == group}
                                 & poison_set) >= len(poison_set))
        ours = [r for r in dlq if dict(r.headers).get("dlq.consumer", b"").decode() == group]
        # Like any topic, the DLQ may hold a re-sent copy when a worker dies between sending a dead letter and
        # recording it; its readers dedupe by the original coordinates, which are the dead letter's identity.
        by_origin: dict[tuple, bytes] = {}
        for r in ours:
            h = dict(r.headers)
            by_origin[(h["dlq.original.topic"], h["dlq.original.partition"], h["dlq.original.offset"])] = r.value
        dlq_values = Counter(by_origin.values())
        resent_dead_letters = len(ours) - len(by_origin)
        dlq_unexpected = [v for v in dlq_values if v not in poison_set]
        dlq_twice = [v for v, n in dlq_values.items() if n > 1]
        without_reason = [r for r in ours if not dict(r.headers).get("dlq.reason")]
        reg = await asyncpg.connect(dbs["registry"])
        try:
            upserted = {r["uscc"] for r in await reg.fetch(
                "SELECT uscc FROM institutions WHERE uscc = ANY($1::text[])", valid_usccs)}
        finally:
            await reg.close()

        lost_rows = acknowledged - stored
        unexplained = stored - acknowledged - {k for k in stored if k not in workload.acknowledged}
        no_event = [k for k in stored if len(event_ids[k]) == 0]
        several_events = [k for k in stored if len(event_ids[k]) > 1]
        lost_in_matching = stored - in_matching
        lost_in_inbox = [k for k in stored if not sum(notices[e] for e in event_ids[k])]
        duplicated_in_inbox = [k for k in stored if sum(notices[e] for e in event_ids[k]) > 1]
        redelivered = sum(n - 1 for n in deliveries.values())

        print("\nfaults:", *fault_log, sep="\n  ")
        print(f"\nwrites attempted {sum(workload.statuses.values())}, answers {dict(workload.statuses)}")
        print(f"acknowledged {len(acknowledged)}, stored {len(stored)} (unacknowledged but stored: "
              f"{len(stored - acknowledged)}), events {sum(len(v) for v in event_ids.values())} "
              f"(re-sent copies of the same event id on the topic: {redelivered})")
        print(f"lost: rows {len(lost_rows)}, events {len(no_event)}, matching {len(lost_in_matching)}, "
              f"inbox {len(lost_in_inbox)}; duplicated: events {len(several_events)}, inbox {len(duplicated_in_inbox)}")
        print(f"5xx other than 503+Retry-After and other violations: {len(workload.violations)}")
        print(f"writes acknowledged while the broker was down: {acked_while_broker_down}")
        print(f"poison sent {len(poison)} ({len(KINDS)} kinds), dead-lettered {sum(dlq_values.values())} "
              f"(unexpected {len(dlq_unexpected)}, twice {len(dlq_twice)}, without reason {len(without_reason)}, "
              f"re-sent copies of the same dead letter {resent_dead_letters}); "
              f"valid municipal records applied {len(upserted)} of {len(valid_usccs)}")

        assert not workload.violations, workload.violations[:5]
        assert acked_while_broker_down > 0, "writes keep succeeding while the broker is down"
        assert not lost_rows and not unexplained
        assert not no_event and not several_events
        assert not lost_in_matching
        assert not lost_in_inbox and not duplicated_in_inbox
        assert set(dlq_values) == poison_set and not dlq_twice and not without_reason
        assert upserted == set(valid_usccs)
    finally:
        for p in procs.values():
            p.stop()
        await asyncio.to_thread(broker.ensure_up)
