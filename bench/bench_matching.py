"""Matching benchmarks, each beside a baseline measured in the same run.

1. Top-20 recommendations over 100,000 candidates: the numpy-vectorised index vs a straightforward per-candidate
   Python scoring loop (same formula); rankings and scores must be identical.
2. A placement round of 50,000 applicants x 5,000 positions with 10-item lists (applicant-proposing deferred
   acceptance) vs the PyPI `matching` package (1.4.x) on the largest instance it finishes within a minute, run in a
   subprocess (it deep-copies its player graph, so it gets a large stack) and checked for identical assignments.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from bench.support import summary_ms, table
from matching.domain import DISTRICTS
from matching.placement import (
    Applicant,
    PlacementProblem,
    Position,
    acceptable_preferences,
    position_preferences,
    solve,
)
from matching.scoring import Candidate, CandidateIndex, Query, init_segmenter, tokenize

ROOT = Path(__file__).resolve().parents[1]
TERMS = ["集成电路", "芯片", "晶圆", "封装", "测试", "工业机器人", "智能制造", "数控", "机电一体化", "人工智能", "大数据", "云计算", "软件开发", "网络安全", "新能源汽车", "动力电池", "氢能", "航空航天", "船舶", "物流", "跨境电商", "金融科技", "生物医药", "医疗器械", "护理", "康养", "酒店管理", "旅游", "会计", "电气自动化", "PLC", "焊接", "模具", "汽车维修", "光伏", "储能", "微电子", "数字孪生", "工业互联网", "嵌入式", "物联网", "机器视觉", "激光", "精密加工", "新材料", "化工", "环境工程", "建筑", "BIM", "城市轨道交通", "港口", "航运", "冷链", "食品", "检验检测"]  # noqa: E501
INDUSTRIES = ("integrated_circuits", "artificial_intelligence", "biomedicine", "intelligent_manufacturing",
              "new_energy_vehicles", "aerospace", "shipping", "logistics", "finance", "digital_economy",
              "green_energy", "new_materials", "healthcare", "tourism", "construction", "agriculture")
REFERENCE_TIMEOUT = 60.0


def make_candidates(n: int, rng: random.Random) -> list[Candidate]:
    """Synthetic institutions and offers with realistic Chinese vocabulary (segmented once, as stored)."""
    vocab = sorted({t for term in TERMS for t in tokenize(term)} | set(t.lower() for t in TERMS))
    return [Candidate(
        id=f"c{i:06d}", kind="institution" if i % 3 else "offer", name=f"候选{i}", institution_id=f"inst{i % 40000}",
        industries=tuple(rng.sample(INDUSTRIES, rng.randint(0, 3))),
        tokens=tuple(sorted(set(rng.choices(vocab, k=rng.randint(2, 14))))), district=rng.choice(DISTRICTS),
        certified=rng.random() < 0.15, capacity_left=rng.randint(0, 12), completed=rng.randint(0, 4),
        cancelled=rng.randint(0, 2)) for i in range(n)]


def bench_recommendations(n: int = 100_000, queries: int = 60, loop_queries: int = 5) -> dict:
    """p50/p95 of vectorised top-20 vs the per-candidate loop, with identical rankings checked."""
    init_segmenter()
    rng = random.Random(2026)
    cands = make_candidates(n, rng)
    started = time.perf_counter()
    index = CandidateIndex(cands)
    build_s = time.perf_counter() - started
    qs = [Query(industries=tuple(rng.sample(INDUSTRIES, rng.randint(1, 2))),
                tokens=tuple(tokenize(" ".join(rng.sample(TERMS, rng.randint(2, 6))) + " 订单班 培养")),
                district=rng.choice(DISTRICTS), needed=rng.randint(1, 5),
                exclude_institution=f"inst{rng.randrange(40000)}")
          for _ in range(queries)]
    vec = []
    results = []
    for q in qs:
        t = time.perf_counter()
        results.append(index.top(q, 20))
        vec.append(time.perf_counter() - t)
    loop = []
    identical = True
    for q, fast in zip(qs[:loop_queries], results[:loop_queries]):
        t = time.perf_counter()
        slow = index.top_by_loop(q, 20)
        loop.append(time.perf_counter() - t)
        identical &= [r.candidate.id for r in fast] == [index.candidates[i].id for i, _ in slow]
        identical &= [r.score for r in fast] == [s for _, s in slow]
    v, lp = summary_ms(vec), summary_ms(loop)
    speedup = round(lp["p50_ms"] / v["p50_ms"], 1)
    table([("numpy-vectorised index", n, v["n"], v["p50_ms"], v["p95_ms"], v["p99_ms"]),
           ("per-candidate Python loop (baseline)", n, lp["n"], lp["p50_ms"], lp["p95_ms"], lp["p99_ms"])],
          ("top-20 recommendations", "candidates", "queries", "p50 ms", "p95 ms", "p99 ms"))
    print(f"index build {build_s * 1000:.0f} ms; speed-up (p50) x{speedup}; identical rankings and scores: "
          f"{identical}", flush=True)
    return {"candidates": n, "index_build_ms": round(build_s * 1000, 1), "vectorised": v, "loop_baseline": lp,
            "speedup_p50": speedup, "identical_rankings": identical}


def make_round(n_app: int, n_pos: int, seed: int) -> PlacementProblem:
    """Applicants with 10-item lists skewed towards popular positions; a third of positions rank their applicants."""
    rng = random.Random(seed)
    pos_ids = [f"p{i}" for i in range(n_pos)]
    weights = [1.0 / (i + 1) ** 0.5 for i in range(n_pos)]
    apps = []
    for i in range(n_app):
        chosen: dict[str, None] = {}
        while len(chosen) < min(10, n_pos):
            for p in rng.choices(pos_ids, weights=weights, k=10 - len(chosen)):
                chosen.setdefault(p)
        apps.append(Applicant(id=f"a{i}", preferences=tuple(chosen)))
    listed: dict[str, list[str]] = {p: [] for p in pos_ids}
    for a in apps:
        for p in a.preferences:
            listed[p].append(a.id)
    positions = []
    for p in pos_ids:
        ranking = None
        if rng.random() < 1 / 3:
            ranking = listed[p][:]
            rng.shuffle(ranking)
            ranking = tuple(ranking)
        positions.append(Position(id=p, capacity=rng.randint(5, 15), ranking=ranking, host_id=f"h{int(p[1:]) // 5}"))
    return PlacementProblem(positions=tuple(positions), applicants=tuple(apps), seed=seed)


def reference_worker(n_app: int, n_pos: int, seed: int) -> None:
    """(Subprocess) solve one instance with the reference package; print its time and whether it agrees."""
    import threading

    from matching import reference

    problem = make_round(n_app, n_pos, seed)
    ours = solve(problem).assignments
    out: dict = {}

    def work() -> None:
        sys.setrecursionlimit(1_000_000)
        t = time.perf_counter()
        got = reference.solve_hospital_resident(
            {u: ps for u, ps in acceptable_preferences(problem).items() if ps}, position_preferences(problem),
            {p.id: p.capacity for p in problem.positions})
        out.update(seconds=time.perf_counter() - t, identical=got == ours)

    threading.stack_size(1 << 29)
    th = threading.Thread(target=work)
    th.start()
    th.join()
    print(json.dumps(out), flush=True)


async def _reference(n_app: int, n_pos: int, seed: int) -> dict | None:
    """Run the reference solver in a subprocess, or None when it does not finish within the time limit."""
    code = f"from bench.bench_matching import reference_worker; reference_worker({n_app}, {n_pos}, {seed})"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=str(ROOT),
                                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=REFERENCE_TIMEOUT + 15)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    lines = out.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        return None
    got = json.loads(lines[-1])
    return got if got.get("seconds", 1e9) <= REFERENCE_TIMEOUT else None


async def bench_placement() -> dict:
    """Our DA on 50,000 x 5,000, and the reference on growing instances up to what it solves within a minute."""
    problem = make_round(50_000, 5_000, seed=7)
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        result = solve(problem)
        runs.append(time.perf_counter() - t)
    ours = summary_ms(runs)
    rows = [("ours: deferred acceptance", "50000 x 5000", round(min(runs), 3), len(result.assignments),
             len(result.unplaced), "-")]
    largest = None
    budget = time.monotonic() + 110  # keep the whole benchmark within about three minutes
    for n_app in (1_000, 2_000, 5_000, 10_000, 20_000, 50_000):
        if time.monotonic() > budget:
            break
        n_pos = n_app // 10
        ref = await _reference(n_app, n_pos, seed=7)
        sub = make_round(n_app, n_pos, seed=7)
        t = time.perf_counter()
        solve(sub)
        mine = time.perf_counter() - t
        if ref is None:
            rows.append(("matching 1.4 (reference)", f"{n_app} x {n_pos}", "> 60 (or failed)", "", "", ""))
            break
        rows.append(("matching 1.4 (reference)", f"{n_app} x {n_pos}", round(ref["seconds"], 3), "", "",
                     ref["identical"]))
        rows.append(("ours, same instance", f"{n_app} x {n_pos}", round(mine, 3), "", "", "-"))
        largest = {"applicants": n_app, "positions": n_pos, "reference_seconds": round(ref["seconds"], 3),
                   "ours_seconds": round(mine, 3), "identical": ref["identical"],
                   "speedup": round(ref["seconds"] / mine, 1)}
        if ref["seconds"] > REFERENCE_TIMEOUT / 4:
            break  # the next size (at least twice as large, superlinear) would not finish within the minute
    table(rows, ("solver", "applicants x positions", "seconds", "placed", "unplaced", "identical to ours"))
    if largest:
        print(f"largest instance the reference solved within a minute: {largest['applicants']} x "
              f"{largest['positions']} in {largest['reference_seconds']} s (ours {largest['ours_seconds']} s, "
              f"x{largest['speedup']})", flush=True)
    return {"ours_50000x5000": ours, "placed": len(result.assignments), "unplaced": len(result.unplaced),
            "reference_largest": largest}


async def run(ctx) -> dict:
    """Both benchmarks (no broker or database needed: these measure the pure algorithms)."""
    print("-- recommendations --", flush=True)
    rec = bench_recommendations()
    print("-- placement --", flush=True)
    place = await bench_placement()
    return {"recommendations": rec, "placement": place}
