"""Demo data: the institutions the policy seeds name, plus generated ones, loaded through the registry's HTTP API.

    python -m registry.seed --url http://127.0.0.1:8001 [--generated 200]

Going through the API (not the database) means every record also produces its events, so the other services'
projections fill up too. Running it twice is harmless: records that exist (same USCC or school code) are kept.
USCCs of the named institutions are illustrative, with check characters computed by the GB 32100-2015 rule; school
codes follow the 41 + 31 + 0 + national-code pattern.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from typing import Any

import httpx

from common.auth import mint_token
from registry.config import Settings
from registry.domain import District, Industry, complete_uscc

NAMED: list[dict[str, Any]] = [
    {"kind": "university", "name_zh": "上海电机学院", "name_en": "Shanghai Dianji University",
     "school_code": "4131010259", "district": "lingang",
     "industries": ["intelligent_manufacturing", "high_end_equipment", "new_energy"],
     "keywords": ["应用型本科", "电气工程", "机械工程", "产业学院"], "website": "https://www.sdju.edu.cn",
     "contact_name": "产教融合办公室", "contact_email": "cjrh@example.sdju.edu.cn"},
    {"kind": "university", "name_zh": "上海海事大学", "name_en": "Shanghai Maritime University",
     "school_code": "4131010254", "district": "lingang",
     "industries": ["shipping_logistics", "high_end_equipment"], "keywords": ["航运", "港口", "物流"],
     "website": "https://www.shmtu.edu.cn"},
    {"kind": "university", "name_zh": "上海海洋大学", "name_en": "Shanghai Ocean University",
     "school_code": "4131010264", "district": "lingang", "industries": ["marine", "biomedicine"],
     "keywords": ["海洋科学", "水产", "食品"], "website": "https://www.shou.edu.cn"},
    {"kind": "university", "name_zh": "上海电力大学", "name_en": "Shanghai University of Electric Power",
     "school_code": "4131010256", "district": "lingang", "industries": ["new_energy", "green_low_carbon"],
     "keywords": ["电力", "能源电力高校联盟", "智能电网"], "website": "https://www.shiep.edu.cn"},
    {"kind": "university", "name_zh": "上海建桥学院", "name_en": "Shanghai Jian Qiao University",
     "school_code": "4131012050", "district": "lingang",
     "industries": ["digital_economy", "modern_services", "intelligent_manufacturing"],
     "keywords": ["民办本科", "应用型"], "website": "https://www.gench.edu.cn"},
    {"kind": "vocational_bachelor", "name_zh": "上海中侨职业技术大学", "name_en": "Shanghai Zhongqiao Vocational and "
     "Technical University", "school_code": "4131014215", "district": "jinshan",
     "industries": ["modern_services", "intelligent_manufacturing"], "keywords": ["职业本科"]},
    {"kind": "research_institute", "name_zh": "上海交大中英低碳学院", "name_en": "SJTU China-UK Low Carbon College",
     "district": "lingang", "industries": ["green_low_carbon", "new_energy"], "keywords": ["低碳", "碳中和"]},
    {"kind": "research_institute", "name_zh": "上海临港新工科产教融合研究院", "district": "lingang",
     "uscc": complete_uscc("12310000MB2F00010"),
     "industries": ["integrated_circuits", "artificial_intelligence", "intelligent_manufacturing"],
     "keywords": ["新工科", "产教融合"]},
    {"kind": "enterprise", "name_zh": "上海临港经济发展（集团）有限公司", "name_en": "Lingang Group",
     "uscc": "91310000132214209T", "district": "lingang",
     "industries": ["integrated_circuits", "intelligent_manufacturing", "aerospace"],
     "keywords": ["临港集团", "园区开发", "高技能人才培养基地"], "contact_name": "人力资源部",
     "contact_phone": "021-00000000"},
    {"kind": "industrial_park", "name_zh": "临港大学科技园", "district": "lingang",
     "uscc": complete_uscc("91310115MA1K4LGK0"), "industries": ["integrated_circuits", "artificial_intelligence"],
     "keywords": ["大学科技园", "孵化"]},
    {"kind": "enterprise", "name_zh": "上海致达科技集团有限公司", "uscc": complete_uscc("91310107MA1G0DJT0"),
     "district": "putuo", "industries": ["digital_economy", "intelligent_manufacturing"], "keywords": ["致达集团"]},
    {"kind": "government_agency", "name_zh": "中国（上海）自由贸易试验区临港新片区管理委员会",
     "district": "lingang", "keywords": ["管委会", "临港新片区"]},
    {"kind": "industry_association", "name_zh": "上海市集成电路行业协会", "district": "pudong",
     "uscc": complete_uscc("51310000MJ4JCA01A"), "industries": ["integrated_circuits"]},
]

_PREFIXES = ["临港", "浦江", "东海", "滴水湖", "洋山", "申城", "黄浦江", "张江", "漕河泾", "紫竹", "金桥", "松江",
             "嘉定", "宝山", "奉贤", "青浦", "闵行", "杨浦", "徐汇", "长宁"]
_TRADES = {
    Industry.INTEGRATED_CIRCUITS: "芯片", Industry.ARTIFICIAL_INTELLIGENCE: "智能", Industry.BIOMEDICINE: "生物医药",
    Industry.AEROSPACE: "航天", Industry.HIGH_END_EQUIPMENT: "装备", Industry.INTELLIGENT_MANUFACTURING: "智造",
    Industry.NEW_ENERGY_VEHICLES: "新能源汽车", Industry.NEW_MATERIALS: "新材料", Industry.NEW_ENERGY: "能源",
    Industry.SHIPPING_LOGISTICS: "航运物流", Industry.MARINE: "海洋科技", Industry.DIGITAL_ECONOMY: "数据",
    Industry.FINANCE: "金融服务", Industry.MODERN_SERVICES: "商务服务", Industry.GREEN_LOW_CARBON: "低碳",
    Industry.CIVIL_AVIATION: "航空",
}
_SUFFIXES = ["科技有限公司", "技术有限公司", "股份有限公司", "实业有限公司", "工程有限公司"]


def generated_enterprises(n: int, *, seed: int = 2026) -> list[dict[str, Any]]:
    """`n` plausible enterprises with unique names and valid Shanghai USCCs (deterministic for a seed)."""
    rng = random.Random(seed)
    districts = list(District)
    out, names = [], set()
    while len(out) < n:
        industry = rng.choice(list(_TRADES))
        name = f"上海{rng.choice(_PREFIXES)}{_TRADES[industry]}{rng.choice(_SUFFIXES)}"
        if name in names:
            name = name.replace("有限公司", f"（{len(out)}号）有限公司")
        names.add(name)
        division = rng.choice(["310115", "310112", "310104", "310110", "310120", "310117", "310000"])
        org = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(9))
        out.append({
            "kind": "enterprise", "name_zh": name, "uscc": complete_uscc(f"91{division}{org}"),
            "district": rng.choice(districts).value, "industries": [industry.value],
            "keywords": [_TRADES[industry]],
        })
    return out


async def _find(client: httpx.AsyncClient, name: str) -> dict | None:
    r = await client.get("/institutions", params={"q": name, "limit": 5})
    return next((i for i in r.json()["items"] if i["name_zh"] == name), None)


async def _ensure(client: httpx.AsyncClient, body: dict[str, Any]) -> dict:
    r = await client.post("/institutions", json=body)
    if r.status_code == 201:
        return r.json()
    if r.status_code == 409 and r.json().get("existing_id"):
        return (await client.get(f"/institutions/{r.json()['existing_id']}")).json()
    found = await _find(client, body["name_zh"])
    if found is None:
        raise RuntimeError(f"could not seed {body['name_zh']}: {r.status_code} {r.text}")
    return found


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any] | None = None) -> dict | None:
    r = await client.post(path, json=body)
    if r.status_code in (200, 201):
        return r.json()
    if r.status_code == 409:
        return None  # already there (a second run)
    raise RuntimeError(f"POST {path} failed: {r.status_code} {r.text}")


async def seed(*, client: httpx.AsyncClient, generated: int) -> dict[str, int]:
    """Load the named and generated institutions, a certification batch, a base, an alliance and a mentor.

    `client` points at the registry and carries an office administrator's token.
    """
    named = {b["name_zh"]: await _ensure(client, b) for b in NAMED}
    sem = asyncio.Semaphore(8)

    async def one(body):
        async with sem:
            return await _ensure(client, body)

    made = await asyncio.gather(*(one(b) for b in generated_enterprises(generated)))
    lingang = named["上海临港经济发展（集团）有限公司"]
    dianji = named["上海电机学院"]
    batch = await _post(client, "/certification-batches", {"name": "2026 第一批", "year": 2026,
                                                           "objection_window_days": 7})
    if batch is not None:
        for inst in [lingang, *made[:5]]:
            cert = await _post(client, "/certifications", {"institution_id": inst["id"]})
            if cert is None:
                continue
            for action in ("apply", "approve", "certify", "announce"):
                await _post(client, f"/certifications/{cert['id']}/steps",
                            {"action": action, "batch_id": batch["id"]})
        await _post(client, "/bases", {
            "name_zh": "临港集团高技能人才培养基地", "base_type": "practice", "category": "high_skill_talent_base",
            "host_institution_ids": [lingang["id"], dianji["id"]], "capacity": 500,
            "industries": ["intelligent_manufacturing", "high_end_equipment"], "district": "lingang"})
        await _post(client, "/alliances", {
            "name_zh": "能源电力高校联盟", "kind": "alliance",
            "lead_institution_id": named["上海电力大学"]["id"], "industries": ["new_energy"],
            "members": [{"institution_id": dianji["id"]},
                        {"institution_id": named["上海海事大学"]["id"]}]})
        mentor = await _post(client, "/mentors", {
            "institution_id": lingang["id"], "title": "industry_professor", "name": "示例导师",
            "industries": ["intelligent_manufacturing"], "expertise": "智能制造产线规划"})
        if mentor is not None:
            await _post(client, f"/mentors/{mentor['id']}/consent", {"given": True, "method": "signed_form"})
    return {"named": len(named), "generated": len(made)}


def main() -> None:
    """Command line: seed a running registry."""
    parser = argparse.ArgumentParser(description="Load demo data into a running registry service.")
    parser.add_argument("--url", default="http://127.0.0.1:8001")
    parser.add_argument("--generated", type=int, default=200, help="how many generated enterprises to add")
    args = parser.parse_args()
    settings = Settings()
    token = mint_token(secret=settings.jwt_secret, sub="seed", roles=["office_admin"],
                       audience=settings.jwt_audience, ttl_seconds=3600, issuer=settings.jwt_issuer)

    async def run() -> dict[str, int]:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=args.url, headers=headers, timeout=30) as client:
            return await seed(client=client, generated=args.generated)

    try:
        counts = asyncio.run(run())
    except httpx.ConnectError:
        sys.exit(f"registry is not reachable at {args.url}: start it first (make run)")
    print(f"seeded {counts['named']} named and {counts['generated']} generated institutions into {args.url}")


if __name__ == "__main__":
    main()
