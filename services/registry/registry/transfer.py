"""Spreadsheet import (CSV, XLSX) with a per-row report, and export of institutions."""

from __future__ import annotations

import csv
import io
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.errors import Unprocessable
from common.outbox import EventStager
from registry import service
from registry.domain import PERSONAL_FIELDS, district_from, industry_from
from registry.models import Institution
from registry.schemas import ImportReport, ImportRowReport, InstitutionCreate

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
COLUMNS = (
    "kind", "name_zh", "name_en", "uscc", "school_code", "district", "address", "industries", "keywords", "website",
    "contact_name", "contact_phone", "contact_email",
)
LIST_COLUMNS = ("industries", "keywords")
MAX_ROWS = 5000


def format_from_content_type(content_type: str) -> str:
    """csv or xlsx from a request's Content-Type."""
    ct = content_type.split(";")[0].strip().lower()
    if ct in (XLSX_TYPE, "application/vnd.ms-excel.sheet.macroenabled.12"):
        return "xlsx"
    if ct in ("text/csv", "application/csv", "text/plain"):
        return "csv"
    raise Unprocessable(f"send the sheet as text/csv or {XLSX_TYPE} (or pass ?format=csv|xlsx), not {ct or 'nothing'}")


def _split(value: str) -> list[str]:
    for sep in ("；", "|", ","):
        value = value.replace(sep, ";")
    return [v.strip() for v in value.split(";") if v.strip()]


def read_sheet(raw: bytes, fmt: str) -> list[dict[str, str]]:
    """Rows of a CSV or XLSX sheet as dicts keyed by the header row (cells as stripped strings)."""
    if fmt == "csv":
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise Unprocessable("the CSV is not UTF-8 encoded") from exc
        rows = list(csv.reader(io.StringIO(text)))
    else:
        try:
            wb = load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many types for a file that is not a workbook
            raise Unprocessable(f"the file is not a readable XLSX workbook: {exc.__class__.__name__}") from exc
        rows = [["" if c is None else str(c) for c in r] for r in wb.active.iter_rows(values_only=True)]
        wb.close()
    if not rows:
        raise Unprocessable("the sheet is empty: a header row is needed")
    header = [h.strip() for h in rows[0]]
    unknown = [h for h in header if h and h not in COLUMNS]
    if unknown or "name_zh" not in header or "kind" not in header:
        raise Unprocessable(
            f"the header row must name columns from: {', '.join(COLUMNS)} (kind and name_zh required)"
            + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
        )
    if len(rows) - 1 > MAX_ROWS:
        raise Unprocessable(f"at most {MAX_ROWS} rows per import, got {len(rows) - 1}")
    return [{h: (r[i].strip() if i < len(r) and r[i] is not None else "") for i, h in enumerate(header) if h}
            for r in rows[1:]]


def row_to_create(cells: dict[str, str]) -> InstitutionCreate:
    """A sheet row as a validated InstitutionCreate (districts and industries may be given in Chinese)."""
    data: dict[str, Any] = {k: v for k, v in cells.items() if v != ""}
    for col in LIST_COLUMNS:
        data[col] = _split(data.get(col, ""))
    if "district" in data:
        data["district"] = district_from(data["district"]) or data["district"]
    data["industries"] = [industry_from(i) or i for i in data["industries"]]
    return InstitutionCreate.model_validate(data)


def _errors(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors()]


async def import_institutions(
    *, session: AsyncSession, stager: EventStager, raw: bytes, fmt: str, atomic: bool, actor: str,
) -> ImportReport:
    """Validate every row, then apply the valid ones (or, with `atomic`, none if any row is invalid)."""
    rows = read_sheet(raw, fmt)
    reports: list[ImportRowReport] = []
    valid: list[tuple[ImportRowReport, InstitutionCreate]] = []
    seen: dict[tuple[str, str], int] = {}
    for n, cells in enumerate(rows, start=2):
        if not any(cells.values()):
            reports.append(ImportRowReport(row=n, outcome="skipped", errors=["empty row"]))
            continue
        rep = ImportRowReport(row=n, outcome="created", name_zh=cells.get("name_zh") or None)
        reports.append(rep)
        try:
            data = row_to_create(cells)
        except ValidationError as exc:
            rep.outcome, rep.errors = "invalid", _errors(exc)
            continue
        for field in ("uscc", "school_code"):
            value = getattr(data, field)
            if value and (field, value) in seen:
                rep.outcome = "duplicate"
                rep.errors.append(f"{field} {value} repeats row {seen[(field, value)]} of this sheet")
            elif value:
                seen[(field, value)] = n
        if rep.outcome == "created":
            valid.append((rep, data))
    async with session.begin():
        usccs = [d.uscc for _, d in valid if d.uscc]
        codes = [d.school_code for _, d in valid if d.school_code]
        existing: dict[tuple[str, str], Institution] = {}
        if usccs or codes:
            found = (await session.execute(select(Institution).where(or_(
                Institution.uscc.in_(usccs), Institution.school_code.in_(codes))))).scalars()
            for inst in found:
                existing[("uscc", inst.uscc)] = inst
                existing[("school_code", inst.school_code)] = inst
        still_valid = []
        for rep, data in valid:
            for field in ("uscc", "school_code"):
                hit = existing.get((field, getattr(data, field)))
                if getattr(data, field) and hit is not None:
                    rep.outcome = "duplicate"
                    rep.errors.append(f"{field} already registered: {hit.name_zh} ({hit.id})")
            if rep.outcome == "created":
                still_valid.append((rep, data))
        rejected = sum(r.outcome in ("invalid", "duplicate") for r in reports)
        applied = not (atomic and rejected)
        if applied:
            for rep, data in still_valid:
                row = await service.add_institution(session=session, stager=stager, data=data, actor=actor)
                rep.id = row["id"]
        else:
            for rep, _ in still_valid:
                rep.outcome = "not_applied"
    return ImportReport(
        applied=applied, atomic=atomic, total=sum(r.outcome != "skipped" for r in reports),
        created=sum(1 for r in reports if r.outcome == "created"), rejected=rejected, rows=reports,
    )


def _cell(inst: dict[str, Any], col: str) -> str:
    value = inst[col]
    if col in LIST_COLUMNS:
        return ";".join(value)
    return "" if value is None else str(value)


def _xlsx_safe(value: Any) -> Any:
    """A cell value XLSX can hold: control characters (which a stored name may contain) become U+FFFD instead of
    making the whole export fail."""
    return ILLEGAL_CHARACTERS_RE.sub("\ufffd", value) if isinstance(value, str) else value


async def export_institutions(
    *, session: AsyncSession, fmt: str, include_personal: bool, **filters: Any,
) -> tuple[bytes, str]:
    """The filtered institutions as a CSV or XLSX file (same columns the import reads, plus id and status)."""
    cols = ["id", *[c for c in COLUMNS if include_personal or c not in PERSONAL_FIELDS], "status", "successor_id"]
    rows: list[list[str]] = []
    cursor = None
    while True:
        page, cursor = await service.list_institutions(session=session, limit=1000, cursor=cursor, **filters)
        rows.extend([_cell(i, c) for c in cols] for i in page)
        if cursor is None:
            break
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(cols)
        writer.writerows(rows)
        return buf.getvalue().encode("utf-8-sig"), "text/csv; charset=utf-8"
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("institutions")
    ws.append(cols)
    for r in rows:
        ws.append([_xlsx_safe(v) for v in r])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue(), XLSX_TYPE
