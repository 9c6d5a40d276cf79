"""Spreadsheet import (CSV, XLSX) with a per-row report, and export of institutions: an export re-imports exactly."""

from __future__ import annotations

import csv
import io
from typing import Any, Literal

from openpyxl import Workbook, load_workbook
from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Unprocessable
from common.outbox import EventStager
from common.spreadsheet import csv_text, restore, xlsx_cells
from registry import service
from registry.domain import PERSONAL_FIELDS, InstitutionStatus, district_from, industry_from
from registry.models import Institution
from registry.schemas import ImportReport, ImportRowReport, InstitutionCreate

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
COLUMNS = (
    "kind", "name_zh", "name_en", "uscc", "school_code", "district", "address", "industries", "keywords", "website",
    "contact_name", "contact_phone", "contact_email",
)
# Written by the export so a sheet says what it describes; on import `id` identifies the record to compare with
# (when it is known here) and the state columns are read-only (changed by their own operations, never by a sheet).
EXPORT_ONLY = ("id", "status", "successor_id")
LIST_COLUMNS = ("industries", "keywords")
CODE_COLUMNS = ("kind", "district")  # looked up, so surrounding spaces never matter
MAX_ROWS = 5000
# A list cell holds its items separated by ";" (or "；", "|" or a line break; never a comma, which names contain);
# a backslash takes the next character as it is, so an item may contain a separator or surrounding spaces and still
# come back as one exact item.
LIST_SEPARATORS = frozenset(";；|\n")
ImportMode = Literal["create", "upsert"]


def format_from_content_type(content_type: str) -> str:
    """csv or xlsx from a request's Content-Type."""
    ct = content_type.split(";")[0].strip().lower()
    if ct in (XLSX_TYPE, "application/vnd.ms-excel.sheet.macroenabled.12"):
        return "xlsx"
    if ct in ("text/csv", "application/csv", "text/plain"):
        return "csv"
    raise Unprocessable(f"send the sheet as text/csv or {XLSX_TYPE} (or pass ?format=csv|xlsx), not {ct or 'nothing'}")


def join_list(items: list[str]) -> str:
    """A list cell: items separated by ";", separators, backslashes and surrounding spaces escaped."""
    out = []
    for item in items:
        escaped = "".join("\\" + ch if ch in LIST_SEPARATORS or ch == "\\" else ch for ch in item)
        if escaped[:1].isspace():
            escaped = "\\" + escaped
        if escaped[-1:].isspace() and not escaped.endswith("\\" + escaped[-1:]):
            escaped = escaped[:-1] + "\\" + escaped[-1]
        out.append(escaped)
    return ";".join(out)


def split_list(cell: str) -> list[str]:
    """The items of a list cell (the inverse of `join_list`; unescaped spaces around items are dropped)."""
    items: list[str] = []
    chars: list[tuple[str, bool]] = []  # (character, escaped)

    def close() -> None:
        while chars and not chars[0][1] and chars[0][0].isspace():
            chars.pop(0)
        while chars and not chars[-1][1] and chars[-1][0].isspace():
            chars.pop()
        if chars:
            items.append("".join(c for c, _ in chars))
        chars.clear()

    it = iter(cell)
    for ch in it:
        if ch == "\\":
            nxt = next(it, None)
            chars.append(("\\", True) if nxt is None else (nxt, True))
        elif ch in LIST_SEPARATORS:
            close()
        else:
            chars.append((ch, False))
    close()
    return items


def read_sheet(raw: bytes, fmt: str) -> list[dict[str, str]]:
    """Rows of a CSV or XLSX sheet as dicts keyed by the header row (cells as the strings that were exported: the
    quote the CSV export put before formula-like cells is taken off again)."""
    if fmt == "csv":
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise Unprocessable("the CSV is not UTF-8 encoded") from exc
        rows = [[restore(c) for c in r] for r in csv.reader(io.StringIO(text, newline=""))]
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
    known = (*COLUMNS, *EXPORT_ONLY)
    unknown = [h for h in header if h and h not in known]
    if unknown or "name_zh" not in header or "kind" not in header:
        raise Unprocessable(
            f"the header row must name columns from: {', '.join(known)} (kind and name_zh required)"
            + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
        )
    if len(rows) - 1 > MAX_ROWS:
        raise Unprocessable(f"at most {MAX_ROWS} rows per import, got {len(rows) - 1}")
    return [{h: (r[i] if i < len(r) and r[i] is not None else "") for i, h in enumerate(header) if h}
            for r in rows[1:]]


def row_to_create(cells: dict[str, str]) -> InstitutionCreate:
    """A sheet row as a validated InstitutionCreate (districts and industries may be given in Chinese; an empty or
    blank cell is no value)."""
    data: dict[str, Any] = {k: v for k, v in cells.items() if k in COLUMNS and v.strip() != ""}
    for col in CODE_COLUMNS:
        if col in data:
            data[col] = data[col].strip()
    for col in LIST_COLUMNS:
        data[col] = split_list(data.get(col, ""))
    if "district" in data:
        data["district"] = district_from(data["district"]) or data["district"]
    data["industries"] = [industry_from(i) or i for i in data["industries"]]
    return InstitutionCreate.model_validate(data)


def _errors(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors()]


def _differences(inst: Institution, data: InstitutionCreate, columns: list[str]) -> dict[str, Any]:
    """The sheet's values (of the columns it has) that differ from the stored record."""
    values = data.model_dump(mode="json")
    return {c: values[c] for c in columns if c != "kind" and values[c] != getattr(inst, c)}


async def import_institutions(
    *, session: AsyncSession, stager: EventStager, raw: bytes, fmt: str, atomic: bool, mode: ImportMode,
    actor: Principal,
) -> ImportReport:
    """Validate every row against the sheet and the registry, then apply: all or nothing when `atomic` (the default
    at the edge), else the acceptable rows. A row naming an existing record (by a known `id`, else by USCC or school
    code) is `unchanged` when it matches it; when it differs it is a `duplicate` in create mode and `updated` in
    upsert mode."""
    rows = read_sheet(raw, fmt)
    columns = [c for c in (rows[0] if rows else {}) if c in COLUMNS]
    reports: list[ImportRowReport] = []
    parsed: list[tuple[ImportRowReport, dict[str, str], InstitutionCreate]] = []
    seen: dict[tuple[str, str], int] = {}
    for n, cells in enumerate(rows, start=2):
        if not any(v.strip() for v in cells.values()):
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
            parsed.append((rep, cells, data))
    async with session.begin():
        ids = [cells["id"].strip() for _, cells, _ in parsed if cells.get("id", "").strip()]
        usccs = [d.uscc for _, _, d in parsed if d.uscc]
        codes = [d.school_code for _, _, d in parsed if d.school_code]
        by_id: dict[str, Institution] = {}
        by_code: dict[tuple[str, str], Institution] = {}
        if ids or usccs or codes:
            found = (await session.execute(select(Institution).where(or_(
                Institution.id.in_(ids), Institution.uscc.in_(usccs), Institution.school_code.in_(codes),
            )).order_by(Institution.id).with_for_update())).scalars()
            for inst in found:
                by_id[inst.id] = inst
                if inst.uscc:
                    by_code[("uscc", inst.uscc)] = inst
                if inst.school_code:
                    by_code[("school_code", inst.school_code)] = inst
        plan: list[tuple[ImportRowReport, InstitutionCreate, Institution | None, dict[str, Any]]] = []
        for rep, cells, data in parsed:
            target = by_id.get(cells.get("id", "").strip())
            holders = {f: by_code.get((f, getattr(data, f))) for f in ("uscc", "school_code") if getattr(data, f)}
            if target is None:
                target = next((h for h in holders.values() if h is not None), None)
            clashes = [f for f, h in holders.items() if h is not None and h is not target]
            if clashes:
                rep.outcome = "duplicate"
                rep.errors += [f"{f} already registered: {holders[f].name_zh} ({holders[f].id})" for f in clashes]
                continue
            if target is None:
                plan.append((rep, data, None, {}))
                continue
            rep.id = target.id
            changes = _differences(target, data, columns)
            if data.kind.value != target.kind:
                rep.outcome = "invalid"
                rep.errors.append(f"kind cannot change by import ({target.kind} -> {data.kind.value})")
            elif not changes:
                rep.outcome = "unchanged"
            elif mode == "create":
                rep.outcome = "duplicate"
                rep.errors.append(f"already registered as {target.name_zh} ({target.id}) with different "
                                  f"{', '.join(sorted(changes))}; import with mode=upsert to update it")
            elif target.status == InstitutionStatus.WITHDRAWN:
                rep.outcome = "invalid"
                rep.errors.append(f"{target.name_zh} is withdrawn; edit its successor {target.successor_id}")
            elif not actor.acts_for(target.id):
                rep.outcome = "invalid"
                rep.errors.append(f"you may update only your own institution, not {target.id}")
            elif "uscc" in changes and target.uscc and not actor.is_office:
                rep.outcome = "invalid"
                rep.errors.append("a registered USCC is changed by the office (POST /institutions/{id}/uscc-changes)")
            else:
                rep.outcome = "updated"
                plan.append((rep, data, target, changes))
        rejected = sum(r.outcome in ("invalid", "duplicate") for r in reports)
        applied = not (atomic and rejected)
        label = service.actor_label(actor)
        for rep, data, target, changes in plan:
            if not applied:
                rep.outcome = "not_applied"
            elif target is None:
                rep.id = (await service.add_institution(session=session, stager=stager, data=data, actor=label))["id"]
            else:
                await service.apply_changes(session=session, stager=stager, inst=target, values=changes, actor=label)
    return ImportReport(
        applied=applied, atomic=atomic, mode=mode, total=sum(r.outcome != "skipped" for r in reports),
        created=sum(r.outcome == "created" for r in reports), updated=sum(r.outcome == "updated" for r in reports),
        unchanged=sum(r.outcome == "unchanged" for r in reports), rejected=rejected, rows=reports,
    )


def _cell(inst: dict[str, Any], col: str) -> str:
    value = inst[col]
    if col in LIST_COLUMNS:
        return join_list(value)
    return "" if value is None else str(value)


async def export_institutions(
    *, session: AsyncSession, fmt: str, include_personal: bool, **filters: Any,
) -> tuple[bytes, str]:
    """The filtered institutions as a CSV or XLSX file (the columns the import reads, plus id and state), formula-like
    cells neutralised; importing it unchanged reports every row `unchanged`."""
    cols = ["id", *[c for c in COLUMNS if include_personal or c not in PERSONAL_FIELDS], "status", "successor_id"]
    rows: list[list[str]] = []
    cursor = None
    while True:
        page, cursor = await service.list_institutions(session=session, limit=1000, cursor=cursor, **filters)
        rows.extend([_cell(i, c) for c in cols] for i in page)
        if cursor is None:
            break
    if fmt == "csv":
        return csv_text(cols, rows).encode("utf-8"), "text/csv; charset=utf-8"
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("institutions")
    ws.append(cols)
    for r in rows:
        ws.append(xlsx_cells(ws, r))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue(), XLSX_TYPE
