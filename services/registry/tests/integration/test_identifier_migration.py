"""Codes stored as typed before normalisation are rewritten in their canonical form by migration edge_sec_0002, so the
ASCII code is recognised as the same institution from then on; a rewrite that would clash is left for the office."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from common.migrations import upgrade
from registry.config import MIGRATIONS
from tests.support.harness import fresh_database

pytestmark = pytest.mark.integration


async def test_stored_full_width_and_arabic_indic_codes_become_ascii_unless_that_code_is_taken():
    url = await fresh_database("registry")
    await asyncio.to_thread(upgrade, MIGRATIONS, url, "edge_sec_0001")
    rows = {  # id -> (school_code, uscc)
        "wide": ("４１３１０１０２５４", None),
        "arabic": ("٤١٣١٠١٠٢٥٥", None),
        "clash-ascii": ("4131010256", None),
        "clash-wide": ("４１３１０１０２５６", None),
        "uscc-lower": (None, "91310115ma1k4abcd7"),
    }
    conn = await asyncpg.connect(url)
    try:
        for key, (code, uscc) in rows.items():
            await conn.execute(
                "INSERT INTO institutions (id, kind, name_zh, uscc, school_code, district, industries, keywords, "
                "status, name_grams, version, created_at, updated_at) VALUES ($1, 'university', $2, $3, $4, "
                "'pudong', '[]', '[]', 'active', '{}', 1, now(), now())", key, f"学校{uuid.uuid4().hex[:6]}", uscc,
                code)
        await asyncio.to_thread(upgrade, MIGRATIONS, url, "head")
        got = {r["id"]: (r["school_code"], r["uscc"]) for r in await conn.fetch(
            "SELECT id, school_code, uscc FROM institutions")}
    finally:
        await conn.close()
    assert got["wide"] == ("4131010254", None)
    assert got["arabic"] == ("4131010255", None)
    assert got["clash-ascii"] == ("4131010256", None)
    assert got["clash-wide"] == ("４１３１０１０２５６", None), "left for the office to merge"
    assert got["uscc-lower"] == (None, "91310115MA1K4ABCD7")
