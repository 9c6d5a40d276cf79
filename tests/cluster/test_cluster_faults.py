"""Production shape under faults: a three-node Kafka cluster (replication 3, min.insync.replicas 2, SASL_SSL with
ACLs, each service its own principal) and every service replicated as real processes, under a steady mixed workload
of registrations and edits.

Faults, one after another while the workload runs: kill -9 the node that leads the most partitions (restarted a little
later); a rolling restart of all three nodes, one at a time, as an upgrade does; kill -9 a matching worker while its
consumer group rebalances (a new worker joining), and start another; kill -9 one of registry's two relays while it
holds outbox rows. The checker then proves: no acknowledged write lost, no effect duplicated, every write accepted,
per-key order kept on every topic, consumer lag back to zero; and prints the failover figures (longest pause in the
event flow, p99 write -> consumed during and after each fault).

`make test` runs a short variant; `make cluster-faults` the full one (CLUSTER_FULL=1: longer outage, higher rate).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from common.events import CloudEvent
from common.kafka import LocalCredentials
from registry.domain import uscc_check_char
from tests.support.harness import (
    ADMIN_PRINCIPAL,
    ROOT,
    SECURITY_DIR,
    Broker,
    current_group_suffix,
    fresh_database,
    partitions_of,
    token,
    tooling_security,
)
from tests.support.processes import ServiceProcess, service_env

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.cluster]

CLUSTER = ROOT / "scripts" / "cluster.py"
FULL = os.environ.get("CLUSTER_FULL") == "1"
RATE = float(os.environ.get("CLUSTER_RATE", "40" if FULL else "15"))  # registrations per second
NODE_OUTAGE = float(os.environ.get("CLUSTER_NODE_OUTAGE", "20" if FULL else "6"))
EDIT_EVERY = 4  # one registration in four is edited twice afterwards: versions 2 and 3 must arrive in order


def _uscc(i: int) -> str:
    first17 = f"9131011800{i:07d}"
    return first17 + uscc_check_char(first17)


def _free_base() -> int:
    """A port P with P..P+5 free on loopback (three nodes, a client and a controller port each)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + 6 > 65535:
            continue
        ok = True
        for p in range(base, base + 6):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base


class Cluster:
    """The three nodes of scripts/cluster.py, driven from the test."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.base = _free_base()
        self.bootstrap = ",".join(f"127.0.0.1:{self.base + 2 * i}" for i in range(3))

    def _run(self, *args: str) -> None:
        subprocess.run([sys.executable, str(CLUSTER), *args, "--data", str(self.data), "--port", str(self.base)],
                       check=True)

    def start(self) -> None:
        """Start all three nodes (SASL_SSL, ACLs) and wait for them; services and tooling then connect as the single
        broker's principals do (tests.support.harness)."""
        self._run("start")
        creds = LocalCredentials.load(SECURITY_DIR / "credentials.json")
        Broker(self.bootstrap, owned=False, credentials=creds, tooling=creds.security(ADMIN_PRINCIPAL))

    @property
    def admin(self) -> dict:
        """Client keyword arguments of the admin principal (test tooling only)."""
        return tooling_security(self.bootstrap).client_kwargs()

    def stop(self) -> None:
        """Stop all three nodes."""
        self._run("stop")

    def kill(self, node: int) -> None:
        """kill -9 one node."""
        self._run("kill", str(node))

    def stop_node(self, node: int) -> None:
        """Controlled shutdown of one node."""
        self._run("stop-node", str(node))

    def start_node(self, node: int) -> None:
        """Start one node again and wait until it serves."""
        self._run("start-node", str(node))

    async def partitions(self) -> list[dict]:
        """Every partition of every topic: {topic, partition, leader, replicas, isr}."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10000, **self.admin)
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if not t.startswith("__")]
            described = await admin.describe_topics(names)
        finally:
            await admin.close()
        return [{"topic": t["topic"], "partition": p["partition"], "leader": p["leader"],
                 "replicas": list(p["replicas"]), "isr": list(p["isr"])}
                for t in described for p in t["partitions"]]

    async def busiest_leader(self) -> int:
        """The node that leads the most partitions."""
        leaders = Counter(p["leader"] for p in await self.partitions() if p["leader"] >= 0)
        return leaders.most_common(1)[0][0]

    async def wait_fully_replicated(self, timeout: float = 120) -> float:
        """Wait until every partition has all three replicas in sync; returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                parts = await self.partitions()
                if parts and all(len(p["isr"]) == len(p["replicas"]) == 3 for p in parts):
                    return time.monotonic() - started
            except Exception:  # a node is still joining: metadata requests may fail for a moment
                pass
            await asyncio.sleep(0.5)
        raise AssertionError(f"partitions still under-replicated after {timeout}s")


class Workload:
    """Registrations at a steady rate through both registry APIs, some edited twice afterwards; every answer kept."""

    def __init__(self, apis: list[str]) -> None:
        self.apis = apis
        self.acknowledged: dict[str, int] = {}   # institution id -> highest acknowledged version
        self.statuses: Counter[str] = Counter()
        self.violations: list[str] = []
        self.headers = {"Authorization": f"Bearer {token('office_admin')}"}
        self.stopping = False
        # Open loop, but never more requests in flight than connections: a client queue that grows under a slow
        # moment makes httpx's pool spend its time re-scanning the queue, and the generator stops generating.
        self.in_flight = asyncio.Semaphore(64)

    async def _one(self, http: httpx.AsyncClient, i: int) -> None:
        api = self.apis[i % len(self.apis)]
        body = {"kind": "enterprise", "name_zh": f"集群测试企业{i:05d}", "uscc": _uscc(i), "district": "pudong"}
        r = await self._call(http, "POST", f"{api}/institutions", json=body)
        if r is None or r.status_code != 201:
            return
        inst = r.json()
        self.acknowledged[inst["id"]] = 1
        if i % EDIT_EVERY:
            return
        for version in (2, 3):
            api = self.apis[(i + version) % len(self.apis)]  # the edit goes through the other replica
            r = await self._call(http, "PATCH", f"{api}/institutions/{inst['id']}",
                                 json={"name_zh": f"集群测试企业{i:05d}v{version}"},
                                 headers={"If-Match": r.headers["etag"]})
            if r is None or r.status_code != 200:
                return
            self.acknowledged[inst["id"]] = version

    async def _call(self, http: httpx.AsyncClient, method: str, url: str, **kw) -> httpx.Response | None:
        headers = {**self.headers, **kw.pop("headers", {})}
        try:
            async with self.in_flight:
                r = await http.request(method, url, headers=headers, **kw)
        except httpx.HTTPError as exc:
            self.statuses[f"{method} connection:{exc.__class__.__name__}"] += 1
            self.violations.append(f"{method} {url}: {exc!r}")
            return None
        self.statuses[f"{method} {r.status_code}"] += 1
        if r.status_code >= 300:
            self.violations.append(f"{method} {url}: {r.status_code} {r.text[:200]}")
        return r

    async def run(self) -> None:
        """Write until asked to stop."""
        tasks = []
        start = time.perf_counter()
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as http:
            i = 0
            while not self.stopping:
                delay = start + i / RATE - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(self._one(http, i)))
                i += 1
            await asyncio.gather(*tasks)


def _processes(tmp: Path, bootstrap: str, dbs: dict[str, str]) -> dict[str, ServiceProcess]:
    """Registry: two API and two worker processes; matching and notify: two processes each serving API and worker."""
    def proc(service: str, role: str, n: int, *, workers: bool) -> tuple[str, ServiceProcess]:
        env = service_env(service, db_url=dbs[service], bootstrap=bootstrap, run_workers=workers,
                          TOPIC_REPLICATION="3", OUTBOX_SWEEP_SECONDS="0.5")
        env[f"{service.upper()}_RUN_MIGRATIONS"] = "true" if n == 1 else "false"
        name = f"{service}-{role}-{n}"
        return name, ServiceProcess(service, role, env, tmp / f"{name}.log")

    return dict([
        proc("registry", "api", 1, workers=False), proc("registry", "api", 2, workers=False),
        proc("registry", "worker", 1, workers=True), proc("registry", "worker", 2, workers=True),
        proc("matching", "worker", 1, workers=True), proc("matching", "worker", 2, workers=True),
        proc("notify", "worker", 1, workers=True), proc("notify", "worker", 2, workers=True),
    ])


async def _read_all(bootstrap: str, topics: list[str]) -> dict[str, list]:
    """Every record of these topics, from the beginning to the end offsets they had when the read began."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", **tooling_security(bootstrap).client_kwargs())
    await consumer.start()
    try:
        tps = [tp for topic in topics for tp in await partitions_of(consumer, topic)]
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: dict[str, list] = {topic: [] for topic in topics}
        next_offset = {tp: 0 for tp in tps}
        deadline = time.monotonic() + 120
        while behind := [tp for tp in tps if next_offset[tp] < ends[tp]]:
            if time.monotonic() > deadline:
                raise AssertionError(f"never reached the end of {behind[:5]} ({len(behind)} partitions behind)")
            for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                out[tp.topic].extend(m for m in msgs if m.offset < ends[tp])
                if msgs:
                    next_offset[tp] = msgs[-1].offset + 1
        return out
    finally:
        await consumer.stop()


async def _lag(bootstrap: str, suffix: str) -> dict[str, int]:
    """Per consumer group of this test: messages not yet committed."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **tooling_security(bootstrap).client_kwargs())
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                **tooling_security(bootstrap).client_kwargs())
    await admin.start()
    await consumer.start()
    try:
        groups = [g[0] for g in await admin.list_consumer_groups() if g[0].endswith(suffix)]
        lag = {}
        for g in groups:
            committed = await admin.list_consumer_group_offsets(g)
            ends = await consumer.end_offsets(list(committed))
            lag[g] = sum(ends[tp] - meta.offset for tp, meta in committed.items())
        return lag
    finally:
        await consumer.stop()
        await admin.close()


def _p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def test_a_three_node_cluster_with_replicated_services_loses_and_duplicates_nothing_under_faults(tmp_path):
    cluster = Cluster(tmp_path / "cluster")
    await asyncio.to_thread(cluster.start)
    dbs = {s: await fresh_database(s) for s in ("registry", "matching", "notify")}
    procs = _processes(tmp_path, cluster.bootstrap, dbs)
    windows: list[tuple[str, float, float]] = []
    log: list[str] = []
    t0 = time.monotonic()

    def note(what: str) -> None:
        log.append(f"t={time.monotonic() - t0:6.1f}s {what}")
        print(f"cluster faults: {log[-1]}", flush=True)

    try:
        for name in ("registry-api-1", "matching-worker-1", "notify-worker-1"):
            procs[name].start()
        for name in ("registry-api-1", "matching-worker-1", "notify-worker-1"):
            await asyncio.to_thread(procs[name].wait_alive, 180)
        for p in procs.values():
            if p.proc is None:
                p.start()
        for p in procs.values():
            await asyncio.to_thread(p.wait_alive, 180)
        note("cluster and 8 service processes up")
        workload = Workload([procs["registry-api-1"].url, procs["registry-api-2"].url])
        writing = asyncio.create_task(workload.run())
        await asyncio.sleep(5)

        async def window(name: str, action) -> None:
            began = time.time()  # wall clock, as the events' own times are
            await action()
            windows.append((name, began, time.time()))
            note(f"{name}: {time.time() - began:.1f}s")

        async def leader_crash() -> None:
            node = await cluster.busiest_leader()
            await asyncio.to_thread(cluster.kill, node)
            note(f"kill -9 node {node} (led the most partitions)")
            await asyncio.sleep(NODE_OUTAGE)
            await asyncio.to_thread(cluster.start_node, node)
            note(f"node {node} back; in sync after {await cluster.wait_fully_replicated():.1f}s")

        async def rolling_restart() -> None:
            for node in (1, 2, 3):
                await asyncio.to_thread(cluster.stop_node, node)
                await asyncio.to_thread(cluster.start_node, node)
                note(f"node {node} restarted; in sync after {await cluster.wait_fully_replicated():.1f}s")

        async def worker_killed_in_rebalance() -> None:
            extra = ServiceProcess("matching", "worker", {**procs["matching-worker-1"].env,
                                                          "MATCHING_RUN_MIGRATIONS": "false"},
                                   tmp_path / "matching-worker-3.log")
            procs["matching-worker-3"] = extra
            extra.start()  # its consumers join the groups: a rebalance begins
            await asyncio.sleep(2.0)
            procs["matching-worker-1"].kill9()
            note("matching worker 3 joining; kill -9 matching worker 1 during the rebalance")
            await asyncio.to_thread(extra.wait_alive, 120)
            procs["matching-worker-1"].restart()
            await asyncio.to_thread(procs["matching-worker-1"].wait_alive, 120)

        async def relay_killed_mid_batch() -> None:
            conn = await asyncpg.connect(dbs["registry"])
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not await conn.fetchval("SELECT count(*) FROM outbox"):
                    await asyncio.sleep(0.005)
                backlog = await conn.fetchval("SELECT count(*) FROM outbox")
            finally:
                await conn.close()
            procs["registry-worker-1"].kill9()
            note(f"kill -9 registry worker 1 (one of two relays) with {backlog} outbox rows pending")
            await asyncio.sleep(3)
            procs["registry-worker-1"].restart()
            await asyncio.to_thread(procs["registry-worker-1"].wait_alive, 120)

        await window("leader crash", leader_crash)
        await asyncio.sleep(3)
        await window("rolling restart", rolling_restart)
        await asyncio.sleep(3)
        await window("worker killed in a rebalance", worker_killed_in_rebalance)
        await asyncio.sleep(3)
        await window("relay killed mid-batch", relay_killed_mid_batch)
        await asyncio.sleep(5)
        windows.append(("after the faults", windows[-1][2], time.time()))
        workload.stopping = True
        await writing
        note(f"workload stopped: {len(workload.acknowledged)} registrations acknowledged")

        # Converge: the outbox drains, matching projects every acknowledged version, notify has every inbox row.
        reg, mat, ntf = [await asyncpg.connect(dbs[s]) for s in ("registry", "matching", "notify")]
        try:
            deadline = time.monotonic() + 180
            while True:
                stored = {r["id"]: r["version"] for r in await reg.fetch(
                    "SELECT id, version FROM institutions WHERE name_zh LIKE '集群测试企业%'")}
                backlog = await reg.fetchval("SELECT count(*) FROM outbox")
                projected = {r["id"]: r["version"] for r in await mat.fetch("SELECT id, version FROM institution_view")}
                notices = Counter(r["event_id"] for r in await ntf.fetch(
                    "SELECT event_id FROM inbox_messages WHERE recipient = 'role:office_admin' "
                    "AND event_type LIKE '%registry.institution.registered' "
                    # platform chatter reaches the office's inbox through its digest: one entry per event
                    "UNION ALL SELECT event_id FROM digest_entries WHERE recipient = 'role:office_admin' "
                    "AND channel = 'inbox'"))
                converged = (backlog == 0 and all(projected.get(k) == v for k, v in stored.items())
                             and len(notices) >= len(stored))
                if converged or time.monotonic() > deadline:
                    break
                await asyncio.sleep(1.0)
            consumed = {r["event_id"]: r["processed_at"].timestamp() for r in await mat.fetch(
                "SELECT event_id, processed_at FROM processed_events WHERE topic = 'registry.institution.v1'")}
        finally:
            for c in (reg, mat, ntf):
                await c.close()

        note("databases converged")
        topics = sorted({p["topic"] for p in await asyncio.wait_for(cluster.partitions(), timeout=60)})
        note("reading every topic")
        records = await asyncio.wait_for(_read_all(cluster.bootstrap, [t for t in topics if not t.endswith(".dlq")]),
                                         timeout=240)
        note("read; waiting for consumer lag 0")
        lag: dict[str, int] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lag = await asyncio.wait_for(_lag(cluster.bootstrap, current_group_suffix.get()), timeout=30)
            if lag and not any(lag.values()):
                break
            await asyncio.sleep(1.0)

        # Per-key order on every topic: versions never go backwards within a key.
        backwards = []
        for topic, recs in records.items():
            last: dict[tuple, int] = {}
            for r in sorted(recs, key=lambda r: (r.partition, r.offset)):
                data = orjson.loads(r.value).get("data") or {}
                version = data.get("version") if isinstance(data, dict) else None
                if r.key is None or not isinstance(version, int):
                    continue
                k = (topic, r.key)
                if version < last.get(k, 0):
                    backwards.append(f"{topic} {r.key!r}: {last[k]} then {version}")
                last[k] = max(version, last.get(k, 0))

        versions: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
        created_at: dict[str, float] = {}
        for r in records["registry.institution.v1"]:
            ev = CloudEvent.from_bytes(r.value)
            if ev.subject in stored:
                versions[ev.subject][ev.data["version"]].add(ev.id)
                created_at[ev.id] = ev.time.timestamp()

        acknowledged = workload.acknowledged
        lost_rows = [k for k in acknowledged if k not in stored]
        lost_versions = [k for k, v in acknowledged.items() if stored.get(k, 0) < v]
        missing_events = [(k, v) for k, top in stored.items() for v in range(1, top + 1) if not versions[k][v]]
        duplicate_events = [(k, v) for k, by_v in versions.items() for v, ids in by_v.items() if len(ids) > 1]
        stale_projection = [k for k, v in stored.items() if projected.get(k) != v]
        registered = {k: versions[k][1] for k in stored}  # the registration's event ids (one, unless duplicated)
        lost_inbox = [k for k in stored if not sum(notices[e] for e in registered[k])]
        duplicate_inbox = [k for k in stored if sum(notices[e] for e in registered[k]) > 1]

        latency: dict[str, list[float]] = defaultdict(list)
        for event_id, at in consumed.items():
            if event_id in created_at:
                made = created_at[event_id]
                phase = next((n for n, a, b in windows if a <= made <= b), "steady")
                latency[phase].append((at - made) * 1000)
        flow = sorted(consumed[e] for e in consumed if e in created_at)
        longest_pause = max((b - a for a, b in itertools.pairwise(flow)), default=0.0)

        print("\nfaults:", *log, sep="\n  ")
        print(f"\nanswers {dict(workload.statuses)}; acknowledged registrations {len(acknowledged)}, stored "
              f"{len(stored)}, events {sum(len(ids) for by_v in versions.values() for ids in by_v.values())}")
        print(f"lost: rows {len(lost_rows)}, versions {len(lost_versions)}, events {len(missing_events)}, "
              f"projection {len(stale_projection)}, inbox {len(lost_inbox)}; duplicated: events "
              f"{len(duplicate_events)}, inbox {len(duplicate_inbox)}; versions backwards {len(backwards)}; "
              f"consumer lag {lag}")
        print(f"longest pause in the event flow (registry -> matching): {longest_pause:.2f}s")
        for phase in [w[0] for w in windows] + ["steady"]:
            if ms := sorted(latency.get(phase, [])):
                print(f"  write -> consumed during {phase:<30} p50 {ms[len(ms) // 2]:8.1f} ms  p99 {_p99(ms):8.1f} ms"
                      f"  ({len(ms)} events)")

        assert not workload.violations, workload.violations[:5]
        assert not lost_rows and not lost_versions and not missing_events
        assert not duplicate_events and not duplicate_inbox
        assert not stale_projection and not lost_inbox
        assert not backwards, backwards[:5]
        assert lag and not any(lag.values()), lag
    finally:
        for p in procs.values():
            p.stop()
        await asyncio.to_thread(cluster.stop)
