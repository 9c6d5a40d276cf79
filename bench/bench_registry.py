"""Registry: create/read throughput and latency vs a bare FastAPI endpoint, and search latency over 100,000 rows.

1. Create and read: the registry's POST /institutions (validation, duplicate check, history row, outbox event) and
   GET /institutions/{id} (ETag, personal-data filter) against a bare FastAPI app that does a single-row INSERT / SELECT
   of the same columns on the same PostgreSQL database, in the same run, in-process over the same ASGI transport, at
   the same concurrency. The registry runs as it is deployed: this process serves the API (RUN_WORKERS=false) and a
   registry worker process (outbox relay, consumers) publishes the events meanwhile, woken by NOTIFY on commit, on the
   same machine; between rounds the bench waits until the outbox is empty, so no round inherits another's backlog.
2. Search: 100,000 institutions bulk-loaded with COPY, then GET /institutions with name substrings (bigram GIN index),
   filters and both together; baseline: a bare endpoint running the naive `name_zh LIKE '%q%' ORDER BY name_zh` query
   on the same table.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import Column, Integer, MetaData, String, Table, select, text
from sqlalchemy.dialects.postgresql import JSONB

import registry.main
from bench.support import BenchContext, summary_ms, table
from common.db import create_engine
from registry.config import Settings
from registry.domain import District, Industry, InstitutionKind, complete_uscc, name_grams
from tests.support.harness import auth, run_service, wait_until
from tests.support.processes import ServiceProcess, service_env

CONCURRENCY = int(os.environ.get("BENCH_REGISTRY_CONCURRENCY", "16"))
WRITES = int(os.environ.get("BENCH_REGISTRY_WRITES", "4000"))
READS = int(os.environ.get("BENCH_REGISTRY_READS", "8000"))
SEARCH_ROWS = int(os.environ.get("BENCH_REGISTRY_SEARCH_ROWS", "100000"))
SEARCHES = int(os.environ.get("BENCH_REGISTRY_SEARCHES", "400"))
ROUNDS = 8
WARMUP_WRITES = 20 * CONCURRENCY

_CHARS = ("华东海光明远宏达新锐博通信恒泰金鼎瑞丰嘉禾安盛中天和合众诚智联创汇星辰云峰德润康顺永兴鑫源宇航电机"
          "微芯晶睿思景鸿浩益达凯威普惠科讯腾飞龙湾港湖桥江河山林石木")
_TRADES = ["科技", "智能", "电子", "装备", "生物", "医药", "材料", "能源", "物流", "信息", "半导体", "航天", "汽车"]
_SUFFIXES = ["有限公司", "股份有限公司", "技术有限公司", "研究院", "学院"]

bare_meta = MetaData()
bare_table = Table(
    "bare_institutions", bare_meta,
    Column("id", String(36), primary_key=True), Column("kind", String(40)), Column("name_zh", String(200)),
    Column("uscc", String(18)), Column("district", String(30)), Column("industries", JSONB),
    Column("version", Integer),
)


class BareIn(BaseModel):
    """The same body the registry receives, without its validation rules."""

    kind: str
    name_zh: str
    uscc: str | None = None
    district: str
    industries: list[str] = []


def bare_app(url: str) -> tuple[FastAPI, object]:
    """A bare FastAPI app doing one INSERT or SELECT per request on the same database."""
    engine = create_engine(url)
    app = FastAPI()

    @app.post("/bare", status_code=201)
    async def create(body: BareIn) -> dict:
        """Insert one row."""
        row = {"id": str(uuid.uuid4()), **body.model_dump(), "version": 1}
        async with engine.begin() as conn:
            await conn.execute(bare_table.insert().values(**row))
        return row

    @app.get("/bare/{row_id}")
    async def read(row_id: str) -> dict:
        """Select one row."""
        async with engine.connect() as conn:
            row = (await conn.execute(select(bare_table).where(bare_table.c.id == row_id))).mappings().first()
        return dict(row)

    @app.get("/bare-search")
    async def search(q: str) -> list[dict]:
        """The naive substring search: LIKE over every name, sorted."""
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT id, name_zh, district FROM institutions WHERE name_zh LIKE :p ORDER BY name_zh, id LIMIT 50"
            ), {"p": f"%{q}%"})).mappings().all()
        return [dict(r) for r in rows]

    return app, engine


def _uscc(rng: random.Random) -> str:
    org = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(9))
    return complete_uscc(f"91310115{org}")


async def _drive(client: httpx.AsyncClient, requests: list, concurrency: int) -> tuple[list[float], float, int]:
    """Run request thunks with `concurrency` workers; returns latencies, wall seconds, failures."""
    queue = list(reversed(requests))
    latencies: list[float] = []
    failures = 0

    async def worker():
        nonlocal failures
        while queue:
            make = queue.pop()
            t0 = time.perf_counter()
            r = await make(client)
            latencies.append(time.perf_counter() - t0)
            if r.status_code >= 400:
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started, failures


def _bodies(n: int, rng: random.Random) -> list[dict]:
    return [{"kind": "enterprise", "name_zh": f"上海基准{uuid.uuid4().hex[:8]}科技有限公司", "uscc": _uscc(rng),
             "district": rng.choice(list(District)).value, "industries": [rng.choice(list(Industry)).value]}
            for _ in range(n)]


async def _throughput(reg, bare: httpx.AsyncClient, rng: random.Random) -> dict:
    office = auth("office_admin", sub="bench")
    results: dict[str, dict] = {}
    reg_ids: list[str] = []
    bare_ids: list[str] = []

    def reg_create(body):
        async def go(client):
            r = await client.post("/institutions", json=body, headers=office)
            if r.status_code == 201:
                reg_ids.append(r.json()["id"])
            return r
        return go

    def bare_create(body):
        async def go(client):
            r = await client.post("/bare", json=body)
            if r.status_code == 201:
                bare_ids.append(r.json()["id"])
            return r
        return go

    async def rounds(label: str, bare_reqs, reg_reqs) -> None:
        """Alternate bare and registry chunks so that a load change on this shared machine hits both sides alike."""
        samples: dict[str, list[float]] = {"bare": [], "registry": []}
        walls = {"bare": 0.0, "registry": 0.0}
        fails = {"bare": 0, "registry": 0}
        pair_ratios: list[float] = []  # registry / bare of each round: how much the machine's noise moves the ratio
        chunk = max(1, len(bare_reqs) // ROUNDS)
        for i in range(ROUNDS):
            rate = {}
            for side, client, reqs in (("bare", bare, bare_reqs), ("registry", reg.http, reg_reqs)):
                lat, wall, failed = await _drive(client, reqs[i * chunk:(i + 1) * chunk], CONCURRENCY)
                samples[side] += lat
                walls[side] += wall
                fails[side] += failed
                rate[side] = len(lat) / wall
            pair_ratios.append(rate["registry"] / rate["bare"])
            await _outbox_drained(reg)  # the worker has published everything before the next chunk starts
        for side in ("bare", "registry"):
            results[f"{side} {label}"] = {"throughput_per_s": round(len(samples[side]) / walls[side], 1),
                                          "failed": fails[side], **summary_ms(samples[side])}
        results[f"rounds {label}"] = sorted(round(r, 2) for r in pair_ratios)

    # Warm both sides at the measured concurrency first: every pooled connection opened, its statements prepared
    # (done one request at a time, only one connection was, and the first round paid for opening the rest).
    for client, make in ((bare, bare_create), (reg.http, reg_create)):
        await _drive(client, [make(b) for b in _bodies(WARMUP_WRITES, rng)], CONCURRENCY)
    await _outbox_drained(reg)
    await rounds("create", [bare_create(b) for b in _bodies(WRITES, rng)],
                 [reg_create(b) for b in _bodies(WRITES, rng)])

    def getter(path):
        async def go(client):
            return await client.get(path)
        return go

    await rounds("read", [getter("/bare/" + rng.choice(bare_ids)) for _ in range(READS)],
                 [getter("/institutions/" + rng.choice(reg_ids)) for _ in range(READS)])
    return results


async def _outbox_drained(reg, timeout: float = 120) -> None:
    """Wait until the registry worker has published every staged event."""
    async def empty():
        async with reg.runtime.engine.connect() as conn:
            return (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar() == 0
    await wait_until(empty, timeout=timeout, interval=0.05, what="registry outbox drained by the worker")


async def _bulk_load(db_url: str, n: int, rng: random.Random) -> tuple[float, list[str]]:
    """COPY `n` institutions straight into the registry's table; returns seconds and the loaded names."""
    now = datetime.now(UTC)
    kinds = [InstitutionKind.ENTERPRISE] * 8 + [InstitutionKind.UNIVERSITY, InstitutionKind.RESEARCH_INSTITUTE]
    records, names = [], []
    for i in range(n):
        name = ("上海" + "".join(rng.choice(_CHARS) for _ in range(rng.randint(2, 3))) + rng.choice(_TRADES)
                + rng.choice(_SUFFIXES))
        if i == 0:
            name = "上海电机学院"
        names.append(name)
        records.append((
            str(uuid.uuid4()), rng.choice(kinds).value, name, None, complete_uscc(f"91310000{i:09d}"), None,
            rng.choice(list(District)).value, None, json.dumps([rng.choice(list(Industry)).value]), "[]", None,
            None, None, None, "active", None, None, name_grams(name), 1, now, now,
        ))
    columns = ["id", "kind", "name_zh", "name_en", "uscc", "school_code", "district", "address", "industries",
               "keywords", "website", "contact_name", "contact_phone", "contact_email", "status", "successor_id",
               "certification_status", "name_grams", "version", "created_at", "updated_at"]
    conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        started = time.perf_counter()
        await conn.copy_records_to_table("institutions", records=records, columns=columns)
        loaded = time.perf_counter() - started
        await conn.execute("VACUUM ANALYZE institutions")  # the steady state a live registry is in
        return loaded, names
    finally:
        await conn.close()


async def _search(reg, bare: httpx.AsyncClient, names: list[str], rng: random.Random) -> dict:
    def substring():
        name = rng.choice(names)[2:]
        start = rng.randrange(0, max(1, len(name) - 2))
        return name[start:start + rng.choice((2, 3))]

    shapes = {
        "q (2-3 char substring)": lambda: {"q": substring()},
        "q=电机": lambda: {"q": "电机"},
        "district+kind": lambda: {"district": rng.choice(list(District)).value, "kind": "university"},
        "industry": lambda: {"industry": rng.choice(list(Industry)).value},
        "q+district": lambda: {"q": substring(), "district": rng.choice(list(District)).value},
    }
    results = {}
    all_lat: list[float] = []
    for label, params in shapes.items():
        reqs = []
        for _ in range(SEARCHES // len(shapes)):
            p = params()

            async def go(client, p=p):
                return await client.get("/institutions", params=p)
            reqs.append(go)
        lat, _, failed = await _drive(reg.http, reqs, 4)
        all_lat += lat
        results[label] = {"failed": failed, **summary_ms(lat)}
    results["registry, all shapes"] = summary_ms(all_lat)
    reqs = []
    for _ in range(SEARCHES // len(shapes)):
        q = substring()

        async def go(client, q=q):
            return await client.get("/bare-search", params={"q": q})
        reqs.append(go)
    lat, _, failed = await _drive(bare, reqs, 4)
    results["baseline: bare LIKE scan"] = {"failed": failed, **summary_ms(lat)}
    hits = await reg.http.get("/institutions", params={"q": "电机"})
    assert "上海电机学院" in [i["name_zh"] for i in hits.json()["items"]], "search must find 上海电机学院"
    return results


async def run(ctx: BenchContext) -> dict:
    """Run both parts and print the figures next to their baselines."""
    rng = random.Random(7)
    db_url = await ctx.database("bench_registry")
    out: dict = {"concurrency": CONCURRENCY, "writes": WRITES, "reads": READS}
    async with run_service(registry.main.create_app, Settings, broker=ctx.broker, db_url=db_url,
                           log_level="WARNING", run_workers=False) as reg:
        worker = ServiceProcess("registry", "worker", service_env(
            "registry", db_url=db_url, bootstrap=ctx.broker.bootstrap, run_workers=True,
            REGISTRY_RUN_MIGRATIONS="false"), log=Path(tempfile.gettempdir()) / "bench-registry-worker.log")
        worker.start()
        worker.wait_alive()
        try:
            out.update(await _measure(reg, db_url, rng))
        finally:
            worker.stop()
    return out


async def _measure(reg, db_url: str, rng: random.Random) -> dict:
    """Create/read against the bare app, then search over a bulk-loaded table."""
    out: dict = {}
    app, engine = bare_app(db_url)
    async with engine.begin() as conn:
        await conn.run_sync(bare_meta.create_all)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bare") as bare:
        thr = await _throughput(reg, bare, rng)
        rows = []
        for op in ("create", "read"):
            b = thr[f"bare {op}"]
            r = thr[f"registry {op}"]
            ratio = round(r["throughput_per_s"] / b["throughput_per_s"], 2)
            rows.append((op, b["throughput_per_s"], r["throughput_per_s"], ratio, b["p99_ms"], r["p99_ms"]))
            rounds = thr[f"rounds {op}"]
            out[op] = {"bare": b, "registry": r, "ratio_of_bare": ratio, "ratio_per_round": rounds}
            rows[-1] += (f"{rounds[0]}-{rounds[-1]} (median {statistics.median(rounds):.2f})",)
        print(f"\ncreate/read, concurrency {CONCURRENCY}, in-process ASGI, PostgreSQL, {ROUNDS} alternating rounds; "
              "registry API here, its worker process publishing meanwhile", flush=True)
        table(rows, ("op", "bare /s", "registry /s", "ratio", "bare p99 ms", "registry p99 ms", "ratio per round"))

        await _outbox_drained(reg)
        load_s, names = await _bulk_load(db_url, SEARCH_ROWS, rng)
        print(f"\nbulk-loaded {SEARCH_ROWS} institutions with COPY in {load_s:.1f}s", flush=True)
        search = await _search(reg, bare, names, rng)
        table([(k, v["p50_ms"], v["p95_ms"], v["p99_ms"], v["n"]) for k, v in search.items()],
              (f"search over {SEARCH_ROWS} rows", "p50 ms", "p95 ms", "p99 ms", "n"))
        out["search"] = {"rows": SEARCH_ROWS, "bulk_load_seconds": round(load_s, 1), **search}
    await engine.dispose()
    return out
