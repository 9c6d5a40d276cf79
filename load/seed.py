"""What the workload needs before it starts: institutions, a certification batch and pool, open activities and
opportunities, and the projections in matching and events caught up with registry."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import dataclass, field

import httpx

from registry.domain import uscc_check_char
from tests.support.harness import auth

OFFICE = auth("office_admin")
DISTRICTS = ("pudong", "lingang", "minhang", "jiading", "songjiang", "xuhui", "yangpu", "baoshan")
INDUSTRIES = ("integrated_circuits", "artificial_intelligence", "biomedicine", "aerospace", "high_end_equipment",
              "intelligent_manufacturing", "new_energy_vehicles", "new_materials")
KEYWORDS = ("芯片设计", "封装测试", "机器学习", "工业机器人", "数控机床", "动力电池", "新药研发", "卫星导航",
            "数字孪生")
N_UNIVERSITIES = 6
N_UPDATABLE = 120
N_CERTIFIABLE = 60
N_OPPORTUNITIES = 12


def uscc(series: int, i: int) -> str:
    """A valid USCC: `series` keeps the seeds, the municipal feed and anything else apart."""
    first17 = f"913101{series:02d}00{i:07d}"
    return first17 + uscc_check_char(first17)


@dataclass
class Seeded:
    """Ids the workload draws from; `updatable` and `cert_steps` hand out one aggregate to one request at a time."""

    universities: list[str]
    enterprises: list[str]
    updatable: deque  # (institution id, version or None when unknown)
    cert_steps: deque  # (certification id, index of the next step)
    batch_id: str
    activities: list[str]
    opportunities: list[str]
    names: list[str] = field(default_factory=list)


async def _post(http: httpx.AsyncClient, url: str, body: dict, headers=OFFICE) -> dict:
    r = await http.post(url, json=body, headers=headers)
    if r.status_code not in (200, 201):
        raise RuntimeError(f"seed: POST {url} -> {r.status_code} {r.text[:300]}")
    return r.json()


async def _bounded(n: int, coros) -> list:
    gate = asyncio.Semaphore(n)

    async def one(c):
        async with gate:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


async def _wait(check, *, what: str, timeout: float = 90) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"seed: timed out waiting for {what}")
        await asyncio.sleep(0.3)


async def seed(http: httpx.AsyncClient, urls: dict[str, str], rng: random.Random) -> Seeded:
    """Create the seed data through the public APIs and wait until the projections have it."""
    reg, mat, evt = urls["registry"], urls["matching"], urls["events"]

    def institution(kind: str, i: int, series: int) -> dict:
        inds = rng.sample(INDUSTRIES, 2)
        return {"kind": kind, "name_zh": f"{'压测大学' if kind == 'university' else '压测企业'}{series}-{i:04d}",
                "uscc": uscc(series, i), "district": rng.choice(DISTRICTS), "industries": inds,
                "keywords": rng.sample(KEYWORDS, 3)}

    unis = await _bounded(10, [_post(http, f"{reg}/institutions", institution("university", i, 10))
                               for i in range(N_UNIVERSITIES)])
    ents = await _bounded(10, [_post(http, f"{reg}/institutions", institution("enterprise", i, 11))
                               for i in range(N_UPDATABLE + N_CERTIFIABLE)])
    batch = await _post(http, f"{reg}/certification-batches", {"name": "2026 压测批次", "year": 2026})
    certs = await _bounded(10, [_post(http, f"{reg}/certifications", {"institution_id": e["id"]})
                                for e in ents[N_UPDATABLE:]])
    all_ids = {i["id"] for i in unis + ents}

    async def matching_has_all() -> bool:
        known, cursor = set(), None
        while True:  # every page of matching's institutions
            r = await http.get(f"{mat}/institutions", params={"limit": 200, **({"cursor": cursor} if cursor else {})})
            if r.status_code != 200:
                return False
            known |= {i["id"] for i in r.json()["items"]}
            cursor = r.json()["next_cursor"]
            if not cursor:
                return all_ids <= known

    await _wait(matching_has_all, what="matching's projection of the seed institutions")

    activities = []
    kinds = ("job_fair", "conference", "training_camp", "matchmaking")
    for n, org in enumerate(u["id"] for u in unis[:len(kinds)]):
        body = {"kind": kinds[n], "title_zh": f"压测活动{n}：临港产教融合{kinds[n]}", "organiser_id": org,
                "venue": "临港会展中心", "starts_at": "2027-03-01T09:00:00", "ends_at": "2027-03-01T17:00:00",
                "industries": list(INDUSTRIES[:2])}
        created: dict = {}

        async def organiser_known(body=body, created=created) -> bool:
            r = await http.post(f"{evt}/activities", json=body, headers=OFFICE)
            if r.status_code == 201:
                created.update(r.json())
            return r.status_code == 201

        await _wait(organiser_known, what="events' projection of the organisers")
        for status in ("published", "registration_open"):
            await _post(http, f"{evt}/activities/{created['id']}/transitions", {"status": status})
        activities.append(created["id"])

    opportunities = await _bounded(6, [_post(http, f"{mat}/opportunities", {
        "kind": rng.choice(("talent_demand", "joint_rd", "order_class", "technical_service")),
        "title_zh": f"压测需求{i}：{rng.choice(KEYWORDS)}人才",
        "description_zh": "需要芯片设计与机器学习方向的合作伙伴",
        "skills": rng.sample(KEYWORDS, 2), "industries": rng.sample(INDUSTRIES, 2), "district": rng.choice(DISTRICTS),
        "capacity": 5, "institution_id": ents[i]["id"], "open": True,
    }) for i in range(N_OPPORTUNITIES)])

    return Seeded(
        universities=[u["id"] for u in unis], enterprises=[e["id"] for e in ents],
        updatable=deque((e["id"], e["version"]) for e in ents[:N_UPDATABLE]),
        cert_steps=deque((c["id"], 0) for c in certs), batch_id=batch["id"], activities=activities,
        opportunities=[o["id"] for o in opportunities], names=[e["name_zh"] for e in ents],
    )
