"""The demo data loads through the API, twice without harm."""

from __future__ import annotations

import httpx
import pytest

from registry.seed import seed
from tests.support.harness import auth

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="package")]


async def test_seed_loads_the_named_institutions_and_is_repeatable(reg):
    transport = httpx.ASGITransport(app=reg.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry",
                                 headers=auth("office_admin", sub="seed")) as client:
        first = await seed(client=client, generated=20)
        again = await seed(client=client, generated=20)
    assert first == again == {"named": 13, "generated": 20}
    found = (await reg.http.get("/institutions", params={"q": "电机"})).json()["items"]
    assert "上海电机学院" in [i["name_zh"] for i in found]
    public = (await reg.http.get("/certified-enterprises")).json()
    assert "上海临港经济发展（集团）有限公司" in [e["enterprise_name"] for e in public]
    mentors = (await reg.http.get("/mentors", params={"title": "industry_professor"})).json()
    assert "示例导师" in [m["name"] for m in mentors]
