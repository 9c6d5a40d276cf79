"""Dates and integers out of range are 422 with a reason, never 500 and never a silently ignored filter."""

from __future__ import annotations

import pytest

from services.registry.tests.support import new_uscc
from tests.support.harness import auth

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="package")]
OFFICE = auth("office_admin", sub="office-ranges")


@pytest.mark.parametrize("as_of", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "99999-01-01T00:00:00Z"])
async def test_an_as_of_time_without_a_utc_form_is_422(reg, as_of):
    made = (await reg.http.post("/institutions", headers=OFFICE, json={
        "kind": "enterprise", "name_zh": "上海时间边界有限公司", "uscc": new_uscc(), "district": "pudong"})).json()
    r = await reg.http.get(f"/institutions/{made['id']}", params={"as_of": as_of})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json") and "as_of" in r.json()["detail"]
    ok = await reg.http.get(f"/institutions/{made['id']}", params={"as_of": "9999-12-31T23:59:59+00:00"})
    assert ok.status_code == 200


@pytest.mark.parametrize("year", ["99999999999999999999", "0", "-1", "1900", "2101"])
async def test_a_certified_enterprise_year_out_of_range_is_422_not_an_ignored_filter(reg, year):
    r = await reg.http.get("/certified-enterprises", params={"year": year})
    assert r.status_code == 422, r.text
    assert "year" in r.json()["detail"]
    assert (await reg.http.get("/certified-enterprises", params={"year": "2026"})).status_code == 200
