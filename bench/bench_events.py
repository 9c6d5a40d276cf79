"""Events benchmark: registrations per second at a capacity boundary (checked for overbooking afterwards), and the
latency from a registration request to its event on events.registration.v1 at a steady 200 registrations/s.

The service runs as it is deployed, as real uvicorn processes on PostgreSQL and the broker: an API process
(RUN_WORKERS=false) and a worker process (outbox relay woken by NOTIFY on commit, consumers). This process only
generates load and reads Kafka, so the client's CPU is not charged to the service.

Baselines measured in the same run: the same storm on a pool without a capacity limit, plain activity reads at the
same concurrency, and the broker's own produce -> consume latency for a message of the same size.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.support import BenchContext, summary_ms, table
from common.events import CloudEvent
from common.migrations import upgrade_async
from common.server import uvicorn_command
from common.service import ensure_topics
from events.config import MIGRATIONS
from tests.support.harness import ROOT, auth, free_port, partitions_of, produce, token, tooling_security, wait_until
from tests.support.loadgen import LoadClient, Reply, collector_paused

STORM_REQUESTS = 600
STORM_CAPACITY = 150
MAX_IN_FLIGHT = 24  # below the service's connection pool, so an overloaded run queues here, not in the pool
CONCURRENCY = 32
RATE_PER_S = 200
RATES = [(20, 10), (RATE_PER_S, 10)]  # (registrations/s, seconds): a sustainable rate, then the target rate
WARMUP_SECONDS = 3  # at each rate before measuring it (pools, prepared statements, caches): the steady state counts
# uvicorn worker processes serving the API (BENCH_EVENTS_WORKERS). Several are safe: the seat lock is a PostgreSQL
# row lock, the outbox relays take turns under an advisory lock, and NOTIFY wakes every process's relay on commit.
WORKERS = int(os.environ.get("BENCH_EVENTS_WORKERS", "1"))
OFFICE = auth("office_admin", sub="bench-office")
SERVICE_LOG = Path(tempfile.gettempdir()) / "bench-events-service.log"  # the service's stderr, for post-mortems


def _member(sub: str) -> dict:
    return {"Authorization": f"Bearer {token('member', sub=sub)}"}


@asynccontextmanager
async def _events_process(ctx: BenchContext):
    """The events service as an API process and a worker process; yields an HTTP client bound to the API."""
    port = free_port()
    db_url = await ctx.database("bench_events")
    # Migrate once up front, as a deployment's migration job does: processes starting together would race.
    await upgrade_async(MIGRATIONS, db_url)
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=ctx.broker.bootstrap, LOG_LEVEL="WARNING",
               EVENTS_DATABASE_URL=db_url, EVENTS_RUN_MIGRATIONS="false", **ctx.broker.security("events").as_env())
    procs = [_spawn(port, dict(env, RUN_WORKERS="false"), WORKERS),
             _spawn(free_port(), dict(env, RUN_WORKERS="true"), 1)]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                     limits=httpx.Limits(max_connections=100)) as http:
            async def ready():
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_until(ready, timeout=120, interval=0.3, what="events service ready")
            http.service_pids = [p.pid for p in procs]
            async with LoadClient() as load:
                async def send(method: str, path: str, **kw) -> Reply:
                    try:
                        return await load.request(method, f"http://127.0.0.1:{port}{path}", **kw)
                    except (aiohttp.ClientError, TimeoutError):
                        return Reply(0, b"", {})  # a failed connection: counted as an error by the callers

                http.load = send
                yield http
    finally:
        for p in procs:
            _stop(p)


def _spawn(port: int, env: dict, workers: int) -> subprocess.Popen:
    return subprocess.Popen(
        [*uvicorn_command("events", host="127.0.0.1", port=port), "--log-level", "warning", "--workers", str(workers)],
        env=env, stdout=subprocess.DEVNULL, stderr=open(SERVICE_LOG, "ab"),
        cwd=ROOT)


def _cpu_seconds(pids: int | list[int]) -> float:
    """User + system CPU the processes and their live descendants (uvicorn's workers) have used so far (Linux /proc)."""
    if isinstance(pids, list):
        return sum(_cpu_seconds(p) for p in pids)
    fields = Path(f"/proc/{pids}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    try:
        children = Path(f"/proc/{pids}/task/{pids}/children").read_text().split()
    except OSError:
        children = []
    return own + sum(_cpu_seconds(int(c)) for c in children)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


async def _seed_organiser(http, bootstrap: str) -> str:
    inst = str(uuid.uuid4())
    ev = CloudEvent(id=str(uuid.uuid4()), source="//platform.cjrh.sh.cn/registry",
                    type="cn.gov.sh.cjrh.registry.institution.registered", subject=inst, time=datetime.now(UTC),
                    data={"id": inst, "kind": "university", "name_zh": "基准测试大学", "status": "active",
                          "successor_id": None, "version": 1})
    await produce(bootstrap, "registry.institution.v1", [ev.to_bytes()], key=inst.encode())

    async def known():
        r = await http.post("/activities", headers=OFFICE, json=_activity(inst, capacity=None))
        return r.json()["organiser_id"] if r.status_code == 201 else None

    return await wait_until(known, what="organiser projected", timeout=30)


def _activity(org: str, *, capacity: int | None) -> dict:
    return {"kind": "job_fair", "title_zh": "临港春季招聘会", "organiser_id": org, "venue": "临港会展中心",
            "starts_at": "2027-03-01T09:00:00", "ends_at": "2027-03-01T17:00:00", "capacity": capacity}


async def _open(http, org: str, capacity: int | None) -> str:
    act = (await http.post("/activities", headers=OFFICE, json=_activity(org, capacity=capacity))).json()
    for s in ("published", "registration_open"):
        await http.post(f"/activities/{act['id']}/transitions", json={"status": s}, headers=OFFICE)
    return act["id"]


async def _storm(http, activity_id: str, n: int, label: str) -> tuple[float, list]:
    """n distinct members register with CONCURRENCY requests in flight; returns (seconds, responses)."""
    heads = [_member(f"{label}-{i}") for i in range(n)]
    url = f"/activities/{activity_id}/registrations"
    queue = asyncio.Queue()
    for h in heads:
        queue.put_nowait(h)
    out = []

    async def worker():
        while not queue.empty():
            h = queue.get_nowait()
            out.append(await http.load("POST", url, json={}, headers=h))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - t0, out


async def _raw_sql_storm(db_url: str, n: int, capacity: int) -> float:
    """The same statements and the same row lock as a registration, straight over asyncpg (no HTTP, no ORM):
    the floor this design gets from this PostgreSQL on this machine. Returns registrations per second."""
    import asyncpg

    conn = await asyncpg.connect(db_url)
    await conn.execute("""
        CREATE TABLE pool (id int PRIMARY KEY, capacity int, next_seq int NOT NULL);
        CREATE TABLE reg (id serial PRIMARY KEY, pool_id int, key text, status text, seq int, UNIQUE (pool_id, key));
        CREATE INDEX ON reg (pool_id); CREATE INDEX ON reg (status);
        CREATE TABLE box (seq bigserial PRIMARY KEY, payload bytea);
        INSERT INTO pool VALUES (1, $1::int, 1);""".replace("$1::int", str(capacity)))
    await conn.close()
    pool = await asyncpg.create_pool(db_url, min_size=CONCURRENCY, max_size=CONCURRENCY)
    body = b"x" * 600

    async def one(i: int):
        async with pool.acquire() as c, c.transaction():
            await c.fetchrow("SELECT id, status FROM reg WHERE pool_id = 1 AND key = $1", f"k{i}")
            cap, seq = await c.fetchrow(
                "UPDATE pool SET next_seq = next_seq + 1 WHERE id = 1 RETURNING capacity, next_seq - 1")
            counts = dict(await c.fetch("SELECT status, count(*) FROM reg WHERE pool_id = 1 "
                                        "AND status IN ('confirmed', 'offered', 'waitlisted') GROUP BY status"))
            held = counts.get("confirmed", 0) + counts.get("offered", 0)
            status = "confirmed" if held < cap and not counts.get("waitlisted") else "waitlisted"
            await c.execute("INSERT INTO reg (pool_id, key, status, seq) VALUES (1, $1, $2, $3)", f"k{i}", status, seq)
            await c.execute("INSERT INTO box (payload) VALUES ($1)", body)

    queue = list(range(n))

    async def worker():
        while queue:
            await one(queue.pop())

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    secs = time.perf_counter() - t0
    await pool.close()
    return n / secs


async def _reads(http, activity_id: str, n: int) -> float:
    queue = asyncio.Queue()
    for _ in range(n):
        queue.put_nowait(1)

    async def worker():
        while not queue.empty():
            queue.get_nowait()
            await http.load("GET", f"/activities/{activity_id}")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - t0


async def _tail(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                fetch_max_wait_ms=5, **tooling_security(bootstrap).client_kwargs())
    await consumer.start()
    tps = await partitions_of(consumer, topic)
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)
    return consumer


async def _at_rate(http, bootstrap: str, activity_id: str, rate_per_s: int, seconds: int, label: str = "") -> dict:
    """Open-loop load at `rate_per_s`; latency = request start -> the event consumed from Kafka."""
    consumer = await _tail(bootstrap, "events.registration.v1")
    started: dict[str, float] = {}
    arrived: dict[str, float] = {}
    http_lat: list[float] = []
    errors: list[int] = []
    total = rate_per_s * seconds
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def read():
        while len(arrived) < total - len(errors):
            batch = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for msgs in batch.values():
                for m in msgs:
                    sub = orjson.loads(m.value)["data"]["participant_id"]
                    if sub in started and sub not in arrived:
                        arrived[sub] = now

    heads = {f"rate{rate_per_s}{label}-{i}": _member(f"rate{rate_per_s}{label}-{i}") for i in range(total)}

    async def one(sub: str):
        t0 = time.perf_counter()
        started[sub] = t0
        async with gate:
            status = (await http.load("POST", f"/activities/{activity_id}/registrations", json={},
                                      headers=heads[sub])).status_code
        http_lat.append(time.perf_counter() - t0)
        if status != 201:
            errors.append(status)
            del started[sub]

    reader = asyncio.create_task(read())
    with collector_paused():
        t_begin = time.perf_counter()
        tasks = []
        for i in range(total):
            target = t_begin + i / rate_per_s
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(f"rate{rate_per_s}{label}-{i}")))
        await asyncio.gather(*tasks)
        offered_s = time.perf_counter() - t_begin
        try:
            await asyncio.wait_for(reader, timeout=30)
        finally:
            reader.cancel()
            await consumer.stop()
    e2e = [arrived[s] - started[s] for s in arrived]
    return {"target_rate_per_s": rate_per_s, "offered_rate_per_s": round(total / offered_s, 1),
            "events_seen": len(arrived), "errors": len(errors),
            "request_to_event": summary_ms(e2e), "http_response": summary_ms(http_lat)}


async def _broker_floor(bootstrap: str, n: int = 500) -> dict:
    """Produce -> consume latency of registration-sized messages, at the same rate, without the service."""
    topic = f"bench.broker-floor.{uuid.uuid4().hex[:8]}"  # a topic of its own: no consumer of the platform reads it
    await ensure_topics(bootstrap, [topic], partitions=3, security=tooling_security(bootstrap))
    consumer = await _tail(bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=1,
                                **tooling_security(bootstrap).client_kwargs())
    await producer.start()
    sent: dict[str, float] = {}
    lat: list[float] = []

    async def read():
        while len(lat) < n:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for msgs in batch.values():
                for m in msgs:
                    key = m.key.decode() if m.key else ""
                    if key in sent:
                        lat.append(now - sent.pop(key))

    reader = asyncio.create_task(read())
    body = orjson.dumps({"data": {"participant_id": "floor", "pad": "x" * 600}})
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i / RATE_PER_S - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        key = f"floor-{i}"
        sent[key] = time.perf_counter()
        await producer.send(topic, value=body, key=key.encode())
    try:
        await asyncio.wait_for(reader, timeout=30)
    finally:
        reader.cancel()
        await producer.stop()
        await consumer.stop()
    return summary_ms(lat)


async def run(ctx: BenchContext) -> dict:
    """Run both measurements and their baselines; print and return the figures."""
    load_before = os.getloadavg()[0]
    async with _events_process(ctx) as http:
        org = await _seed_organiser(http, ctx.broker.bootstrap)
        bounded = await _open(http, org, STORM_CAPACITY)
        unbounded = await _open(http, org, None)

        cpu0 = _cpu_seconds(http.service_pids)
        secs, responses = await _storm(http, bounded, STORM_REQUESTS, "storm")
        cpu_ms = (_cpu_seconds(http.service_pids) - cpu0) / STORM_REQUESTS * 1000
        base_secs, base_responses = await _storm(http, unbounded, STORM_REQUESTS, "free")
        read_secs = await _reads(http, bounded, STORM_REQUESTS)

        raw_per_s = await _raw_sql_storm(await ctx.database("bench_events_raw"), STORM_REQUESTS, STORM_CAPACITY)
        listing = (await http.get(f"/activities/{bounded}/registrations", headers=OFFICE)).json()["items"]
        confirmed = sum(r["status"] == "confirmed" for r in listing)
        waitlisted = sorted(r["queue_position"] for r in listing if r["status"] == "waitlisted")
        errors = sum(r.status_code != 201 for r in responses) + sum(r.status_code != 201 for r in base_responses)
        correct = (confirmed == STORM_CAPACITY and waitlisted == list(range(1, STORM_REQUESTS - STORM_CAPACITY + 1))
                   and len({r["participant_id"] for r in listing}) == len(listing) == STORM_REQUESTS
                   and errors == 0)
        print(f"service: API in {WORKERS} uvicorn process{'es' if WORKERS > 1 else ''} (BENCH_EVENTS_WORKERS), "
              "relay and consumers in 1 worker process\n"
              f"storm: {STORM_REQUESTS} distinct members, {CONCURRENCY} in flight, capacity {STORM_CAPACITY}; "
              f"service CPU {cpu_ms:.1f} ms per registration (HTTP, auth, ORM, outbox relay)", flush=True)
        table([
            ("registrations at the capacity boundary", round(STORM_REQUESTS / secs, 1), confirmed,
             len(waitlisted), "yes" if correct else "NO"),
            ("baseline: registrations, no capacity limit", round(STORM_REQUESTS / base_secs, 1),
             sum(r.json()["status"] == "confirmed" for r in base_responses), 0, "-"),
            ("baseline: activity reads", round(STORM_REQUESTS / read_secs, 1), "-", "-", "-"),
            ("baseline: same SQL and lock over raw asyncpg", round(raw_per_s, 1), "-", "-", "-"),
        ], ("measurement", "per second", "confirmed", "waitlisted", "correct"))

        rate_act = await _open(http, org, None)
        await asyncio.sleep(1)  # let the relay drain the storms' events before measuring latency
        rates = {}
        for r, secs_ in RATES:
            await _at_rate(http, ctx.broker.bootstrap, rate_act, r, WARMUP_SECONDS, label="warm")
            rates[r] = await _at_rate(http, ctx.broker.bootstrap, rate_act, r, secs_)
        floor = await _broker_floor(ctx.broker.bootstrap)
        print(f"\nlatency, open loop (at most {MAX_IN_FLIGHT} requests in flight)", flush=True)
        rows = []
        for r, res in rates.items():
            rows.append((f"{r}/s: registration request -> event on Kafka", res["offered_rate_per_s"],
                         *res["request_to_event"].values()))
            rows.append((f"{r}/s: baseline: HTTP response of the registration", res["offered_rate_per_s"],
                         *res["http_response"].values()))
        rows.append((f"{RATE_PER_S}/s: baseline: broker produce -> consume", RATE_PER_S, *floor.values()))
        table(rows, ("measurement", "achieved/s", "p50 ms", "p95 ms", "p99 ms", "mean ms", "n"))

    load_after = os.getloadavg()[0]
    print(f"(1-minute load average {load_before:.1f} before, {load_after:.1f} after, on {os.cpu_count()} cores: "
          "the service, PostgreSQL, the broker and this load generator share them)", flush=True)
    return {
        "load_average": [round(load_before, 1), round(load_after, 1)], "workers": WORKERS,
        "storm": {"requests": STORM_REQUESTS, "capacity": STORM_CAPACITY, "concurrency": CONCURRENCY,
                  "registrations_per_s": round(STORM_REQUESTS / secs, 1), "confirmed": confirmed,
                  "waitlisted": len(waitlisted), "correct": correct, "errors": errors,
                  "baseline_unlimited_per_s": round(STORM_REQUESTS / base_secs, 1),
                  "baseline_reads_per_s": round(STORM_REQUESTS / read_secs, 1),
                  "baseline_raw_sql_per_s": round(raw_per_s, 1), "service_cpu_ms_per_registration": round(cpu_ms, 2)},
        "latency": {**{f"at_{r}_per_s": res for r, res in rates.items()}, "baseline_broker": floor},
    }
