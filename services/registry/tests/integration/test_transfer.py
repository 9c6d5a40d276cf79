"""Spreadsheet import (CSV, XLSX) with per-row reports and the all-or-nothing option; export to CSV and XLSX."""

from __future__ import annotations

import csv
import io

import pytest
from openpyxl import Workbook, load_workbook

from services.registry.tests.support import new_school_code, new_uscc
from tests.support.harness import auth

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="package")]
OFFICE = auth("office_admin", sub="office-import")
HEADER = ["kind", "name_zh", "uscc", "school_code", "district", "industries", "contact_name", "contact_phone"]
CSV_TYPE = {"Content-Type": "text/csv"}
XLSX_TYPE = {"Content-Type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def sheet_csv(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows([HEADER, *rows])
    return buf.getvalue().encode("utf-8")


def sheet_xlsx(rows: list[list[str]]) -> bytes:
    wb = Workbook()
    wb.active.append(HEADER)
    for r in rows:
        wb.active.append(r)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


async def search(reg, q: str) -> list[dict]:
    return (await reg.http.get("/institutions", params={"q": q}, headers=OFFICE)).json()["items"]


async def test_an_all_or_nothing_import_with_one_bad_row_applies_nothing(reg):
    rows = [
        ["enterprise", "上海原子导入甲有限公司", new_uscc(), "", "浦东新区", "集成电路;人工智能", "赵", "13800000001"],
        ["enterprise", "上海原子导入乙有限公司", "91350100M000100Y4A", "", "pudong", "", "", ""],
        ["university", "上海原子导入大学", "", new_school_code(), "yangpu", "", "", ""],
    ]
    r = await reg.http.post("/institutions/import", params={"atomic": "true"}, content=sheet_csv(rows),
                            headers={**OFFICE, **CSV_TYPE})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    report = r.json()["report"]
    assert report["applied"] is False and report["rejected"] == 1
    assert [row["outcome"] for row in report["rows"]] == ["not_applied", "invalid", "not_applied"]
    assert report["rows"][1]["row"] == 3 and "check character" in report["rows"][1]["errors"][0]
    assert await search(reg, "原子导入") == []


async def test_a_lenient_import_applies_the_valid_rows_and_reports_the_rest(reg):
    existing = (await reg.http.post("/institutions", json={
        "kind": "enterprise", "name_zh": "上海已存在企业有限公司", "uscc": new_uscc(), "district": "jiading"},
        headers=OFFICE)).json()
    twin = new_uscc()
    rows = [
        ["enterprise", "上海宽松导入甲有限公司", twin, "", "浦东新区", "集成电路", "赵", "13800000001"],
        ["enterprise", "上海宽松导入重复有限公司", twin, "", "pudong", "", "", ""],
        ["enterprise", "上海宽松导入已有有限公司", existing["uscc"], "", "pudong", "", "", ""],
        ["enterprise", "上海宽松导入无区有限公司", new_uscc(), "", "火星", "", "", ""],
        ["", "", "", "", "", "", "", ""],
    ]
    r = await reg.http.post("/institutions/import", content=sheet_csv(rows), headers={**OFFICE, **CSV_TYPE})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["applied"] is True and report["created"] == 1 and report["rejected"] == 3
    outcomes = [(row["row"], row["outcome"]) for row in report["rows"]]
    assert outcomes == [(2, "created"), (3, "duplicate"), (4, "duplicate"), (5, "invalid"), (6, "skipped")]
    assert existing["id"] in report["rows"][2]["errors"][0]
    [made] = await search(reg, "宽松导入")
    assert made["industries"] == ["integrated_circuits"] and made["district"] == "pudong"
    assert made["contact_name"] == "赵"
    assert (await reg.http.post("/institutions/import", content=sheet_csv(rows),
                                headers={**auth("institution_admin", institution=made["id"]), **CSV_TYPE})
            ).status_code == 403


async def test_xlsx_import_and_export_round_trip(reg):
    rows = [["enterprise", f"上海表格导入{i}有限公司", new_uscc(), "", "lingang", "biomedicine", "钱", "13800000002"]
            for i in range(3)]
    r = await reg.http.post("/institutions/import", params={"atomic": "true"}, content=sheet_xlsx(rows),
                            headers={**OFFICE, **XLSX_TYPE})
    assert r.status_code == 200, r.text
    assert r.json()["created"] == 3

    xlsx = await reg.http.get("/institutions/export", params={"format": "xlsx", "q": "表格导入"}, headers=OFFICE)
    assert xlsx.status_code == 200 and xlsx.headers["content-type"].startswith(XLSX_TYPE["Content-Type"])
    ws = load_workbook(io.BytesIO(xlsx.content)).active
    table = [list(r) for r in ws.iter_rows(values_only=True)]
    header = table[0]
    assert [row[header.index("name_zh")] for row in table[1:]] == [f"上海表格导入{i}有限公司" for i in range(3)]
    assert table[1][header.index("contact_name")] == "钱"

    public_csv = await reg.http.get("/institutions/export", params={"format": "csv", "q": "表格导入"})
    assert public_csv.status_code == 200
    parsed = list(csv.DictReader(io.StringIO(public_csv.content.decode("utf-8-sig"))))
    assert len(parsed) == 3 and "contact_name" not in parsed[0], "anonymous exports carry no personal data"
    assert parsed[0]["industries"] == "biomedicine"


async def test_a_sheet_without_the_required_header_is_refused(reg):
    r = await reg.http.post("/institutions/import", content=b"foo,bar\n1,2\n", headers={**OFFICE, **CSV_TYPE})
    assert r.status_code == 422 and "header row" in r.json()["detail"]
    r = await reg.http.post("/institutions/import", content=b"PK\x03\x04garbage", headers={**OFFICE, **XLSX_TYPE})
    assert r.status_code == 422 and "XLSX" in r.json()["detail"]


async def test_a_stored_name_with_control_characters_never_breaks_the_xlsx_export(reg):
    name = "上海控制\x01字符\x1f科技有限公司"
    r = await reg.http.post("/institutions", headers=OFFICE, json={
        "kind": "enterprise", "name_zh": name, "uscc": new_uscc(), "district": "pudong"})
    assert r.status_code == 201, r.text
    xlsx = await reg.http.get("/institutions/export", params={"format": "xlsx", "q": "控制"}, headers=OFFICE)
    assert xlsx.status_code == 200, xlsx.text
    table = [list(row) for row in load_workbook(io.BytesIO(xlsx.content)).active.iter_rows(values_only=True)]
    assert table[1][table[0].index("name_zh")] == "上海控制\ufffd字符\ufffd科技有限公司"
