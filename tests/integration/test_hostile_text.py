"""Hostile text is stored and returned inert, and personal data never reaches callers who may not see it."""

from __future__ import annotations

import pytest

import registry.main
from registry.config import Settings as RegistrySettings
from registry.domain import uscc_check_char
from tests.support.harness import auth, fresh_database, run_service

pytestmark = pytest.mark.integration

HOSTILE = [
    "'; DROP TABLE institutions; --",
    "\" OR 1=1 --",
    "<script>alert('x')</script>",
    "<img src=x onerror=alert(1)>",
    "{{7*7}} ${7*7} %s %n",
    "上海电机学院'); DELETE FROM outbox; --",
]
PHONE, EMAIL = "13912345678", "secret.person@example.cn"


def _uscc(i: int) -> str:
    first17 = f"9131011800{i:07d}"
    return first17 + uscc_check_char(first17)


async def test_injection_strings_in_every_text_field_are_stored_and_returned_verbatim(broker):
    office = auth("office_admin")
    async with run_service(registry.main.create_app, RegistrySettings, broker=broker,
                           db_url=await fresh_database("registry")) as reg:
        for i, text in enumerate(HOSTILE):
            body = {"kind": "enterprise", "name_zh": f"企业{text}", "uscc": _uscc(i), "district": "minhang",
                    "address": text, "keywords": [text], "name_en": text, "contact_name": text}
            r = await reg.http.post("/institutions", json=body, headers=office)
            assert r.status_code == 201, r.text
            assert r.headers["content-type"].startswith("application/json")
            got = (await reg.http.get(f"/institutions/{r.json()['id']}", headers=office)).json()
            for field in ("address", "name_en", "contact_name"):
                assert got[field] == text
            assert got["name_zh"] == f"企业{text}" and got["keywords"] == [text]
        listed = (await reg.http.get("/institutions", params={"q": "企业", "limit": 50})).json()["items"]
        assert len(listed) == len(HOSTILE), "the table is intact and nothing was executed"
        found = (await reg.http.get("/institutions", params={"q": "' OR 1=1 --"})).json()["items"]
        assert found == [], "a search term is a value, never SQL"


async def test_contact_details_reach_only_the_office_and_the_institutions_own_admins(broker):
    async with run_service(registry.main.create_app, RegistrySettings, broker=broker,
                           db_url=await fresh_database("registry")) as reg:
        r = await reg.http.post("/institutions", headers=auth("office_admin"), json={
            "kind": "enterprise", "name_zh": "隐私测试企业", "uscc": _uscc(99), "district": "jiading",
            "contact_name": "李女士", "contact_phone": PHONE, "contact_email": EMAIL})
        inst = r.json()
        viewers = {
            "anonymous": {},
            "member": auth("member"),
            "judge": auth("judge"),
            "another institution's admin": auth("institution_admin", institution="someone-else"),
        }
        paths = [f"/institutions/{inst['id']}", "/institutions?q=隐私", "/institutions/export?format=csv"]
        for who, headers in viewers.items():
            for path in paths:
                resp = await reg.http.get(path, headers=headers)
                assert resp.status_code in (200, 401, 403), (who, path, resp.status_code)
                assert PHONE not in resp.text and EMAIL not in resp.text, f"{who} saw personal data at {path}"
        own = await reg.http.get(f"/institutions/{inst['id']}",
                                 headers=auth("institution_admin", institution=inst["id"]))
        assert own.json()["contact_phone"] == PHONE
        office = await reg.http.get(f"/institutions/{inst['id']}", headers=auth("office_admin"))
        assert office.json()["contact_email"] == EMAIL
