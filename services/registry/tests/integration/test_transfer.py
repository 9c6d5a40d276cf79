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
    r = await reg.http.post("/institutions/import", content=sheet_csv(rows), headers={**OFFICE, **CSV_TYPE})
    assert r.status_code == 422, "all or nothing is the default"
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
    r = await reg.http.post("/institutions/import", params={"atomic": "false"}, content=sheet_csv(rows),
                            headers={**OFFICE, **CSV_TYPE})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["applied"] is True and report["created"] == 1 and report["rejected"] == 3
    outcomes = [(row["row"], row["outcome"]) for row in report["rows"]]
    assert outcomes == [(2, "created"), (3, "duplicate"), (4, "duplicate"), (5, "invalid"), (6, "skipped")]
    assert existing["id"] in report["rows"][2]["errors"][0]
    [made] = await search(reg, "宽松导入")
    assert made["industries"] == ["integrated_circuits"] and made["district"] == "pudong"
    assert made["contact_name"] == "赵"
    assert (await reg.http.post("/institutions/import", params={"atomic": "false"}, content=sheet_csv(rows),
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


# --- formula injection and the export -> import round trip ---------------------------------------------------------

FORMULA_NAME = '=HYPERLINK("http://evil.example","点此查看")'
TRICKY_KEYWORDS = ["船舶, 海工", "a;b", "back\\slash", "+86", "'quoted"]


async def _tricky(reg, tag: str) -> list[dict]:
    made = []
    for name, keywords in ((f"{FORMULA_NAME}{tag}", TRICKY_KEYWORDS), (f"@上海{tag}公式企业", ["-1", "=A1"]),
                           (f"上海{tag}往返企业有限公司", ["船舶, 海工"])):
        r = await reg.http.post("/institutions", headers=OFFICE, json={
            "kind": "enterprise", "name_zh": name, "uscc": new_uscc(), "district": "lingang", "keywords": keywords,
            "industries": ["biomedicine", "integrated_circuits"], "contact_name": "-孙", "contact_email": "a@b.cn"})
        assert r.status_code == 201, r.text
        made.append(r.json())
    return made


async def test_no_export_carries_a_live_formula(reg):
    await _tricky(reg, "注入")
    xlsx = await reg.http.get("/institutions/export", params={"format": "xlsx", "q": "注入"})  # anonymous
    assert xlsx.status_code == 200
    sheet = load_workbook(io.BytesIO(xlsx.content)).active  # formulas, if any, would come back as formulas
    header = [c.value for c in next(sheet.iter_rows())]
    names = [row[header.index("name_zh")] for row in sheet.iter_rows(min_row=2)]
    assert {c.data_type for c in names} == {"s"}
    assert f"{FORMULA_NAME}注入" in {c.value for c in names}
    text = (await reg.http.get("/institutions/export", params={"format": "csv", "q": "注入"})).content.decode()
    parsed = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline="")))
    assert {r["name_zh"][:2] for r in parsed if r["name_zh"][1] in "=@"} == {"'=", "'@"}
    assert not [v for r in parsed for v in r.values() if v[:1] in ("=", "+", "-", "@")]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
async def test_an_export_reimports_unchanged_and_an_edited_export_updates_exactly_in_upsert_mode(reg, fmt):
    tag = f"往返{fmt}"
    made = await _tricky(reg, tag)
    export = await reg.http.get("/institutions/export", params={"format": fmt, "q": tag}, headers=OFFICE)
    assert export.status_code == 200
    ctype = CSV_TYPE if fmt == "csv" else XLSX_TYPE
    r = await reg.http.post("/institutions/import", content=export.content, headers={**OFFICE, **ctype})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["applied"] and report["atomic"] and report["mode"] == "create"
    assert [row["outcome"] for row in report["rows"]] == ["unchanged"] * 3, report
    assert {row["id"] for row in report["rows"]} == {m["id"] for m in made}

    edited = _edit_keywords(export.content, fmt, made[2]["id"], ["船舶, 海工", "新;关键词"])
    refused = await reg.http.post("/institutions/import", content=edited, headers={**OFFICE, **ctype})
    assert refused.status_code == 422, "create mode: an existing record that differs is a duplicate"
    assert [row["outcome"] for row in refused.json()["report"]["rows"]].count("duplicate") == 1
    r = await reg.http.post("/institutions/import", params={"mode": "upsert"}, content=edited,
                            headers={**OFFICE, **ctype})
    assert r.status_code == 200, r.text
    assert sorted(row["outcome"] for row in r.json()["rows"]) == ["unchanged", "unchanged", "updated"]
    for m in made:
        now = (await reg.http.get(f"/institutions/{m['id']}", headers=OFFICE)).json()
        expected = ["船舶, 海工", "新;关键词"] if m["id"] == made[2]["id"] else m["keywords"]
        assert now["keywords"] == expected
        assert (now["name_zh"], now["industries"], now["contact_name"]) == (
            m["name_zh"], m["industries"], m["contact_name"])


def _edit_keywords(content: bytes, fmt: str, inst_id: str, keywords: list[str]) -> bytes:
    """The exported file with one row's keywords replaced, written back the way a spreadsheet would save it."""
    from registry.transfer import join_list

    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"), newline="")))
        col, idc = rows[0].index("keywords"), rows[0].index("id")
        for r in rows[1:]:
            if r[idc] == inst_id:
                r[col] = join_list(keywords)
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        return buf.getvalue().encode("utf-8")
    wb = load_workbook(io.BytesIO(content))
    ws = wb.active
    header = [c.value for c in ws[1]]
    for row in ws.iter_rows(min_row=2):
        if row[header.index("id")].value == inst_id:
            row[header.index("keywords")].value = join_list(keywords)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


async def test_school_codes_in_full_width_digits_are_the_same_school(reg):
    code = new_school_code()
    wide = code.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    r = await reg.http.post("/institutions", headers=OFFICE, json={
        "kind": "university", "name_zh": "上海全角学校", "school_code": wide, "district": "yangpu"})
    assert r.status_code == 201, r.text
    assert r.json()["school_code"] == code
    again = await reg.http.post("/institutions", headers=OFFICE, json={
        "kind": "university", "name_zh": "上海半角学校", "school_code": code, "district": "yangpu"})
    assert again.status_code == 409
    arabic = code.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    bad = await reg.http.post("/institutions", headers=OFFICE, json={
        "kind": "university", "name_zh": "上海阿拉伯数字学校", "school_code": arabic, "district": "yangpu"})
    assert bad.status_code == 422 and "digits 0-9" in bad.text
