"""Spreadsheets the platform writes never execute (OWASP CSV injection), and CSV cells read back exactly."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import Workbook, load_workbook

from common.spreadsheet import csv_from_dicts, csv_text, neutralise, restore, xlsx_cells

pytestmark = pytest.mark.unit

DANGEROUS = ['=HYPERLINK("http://evil.example","点我")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "＝1+1"]


@pytest.mark.parametrize("cell", DANGEROUS)
def test_a_cell_that_would_start_a_formula_gets_a_leading_quote(cell):
    assert neutralise(cell) == "'" + cell
    assert restore(neutralise(cell)) == cell


@pytest.mark.parametrize("cell", ["上海电机学院", "'t Hooft", "", "a=b", "'", 42, -5, None, 3.5])
def test_harmless_cells_and_numbers_are_written_as_they_are(cell):
    assert neutralise(cell) == cell


def test_a_stored_value_that_already_starts_with_a_quote_before_a_formula_survives_the_round_trip():
    for value in ("'=1", "''", "''=x", "'+"):
        assert neutralise(value).startswith("''") or neutralise(value) == "'" + value
        assert restore(neutralise(value)) == value


@given(st.text())
def test_restore_inverts_neutralise_for_every_string(value):
    assert restore(neutralise(value)) == value


def test_a_csv_document_carries_no_live_formula_and_reads_back_exactly():
    text = csv_text(["name", "n"], [[d, -1] for d in DANGEROUS])
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"), newline="")))
    assert all(r[0].startswith("'") for r in rows[1:])
    assert [restore(r[0]) for r in rows[1:]] == DANGEROUS
    assert {r[1] for r in rows[1:]} == {"-1"}, "numbers are not text and are not quoted"


def test_dict_rows_use_the_same_neutralisation():
    text = csv_from_dicts(["team_name", "score"], [{"team_name": "=cmd|' /C calc'!A0", "score": 9.5, "extra": 1}])
    assert text.splitlines()[1] == "'=cmd|' /C calc'!A0,9.5"


def test_xlsx_cells_are_strings_never_formulas_and_read_back_as_stored():
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("t")
    ws.append(xlsx_cells(ws, [*DANGEROUS, "控制\x01字符", 7]))
    buf = io.BytesIO()
    wb.save(buf)
    sheet = load_workbook(io.BytesIO(buf.getvalue())).active  # not data_only: formulas would show as formulas
    cells = next(sheet.iter_rows())
    assert [c.data_type for c in cells[:len(DANGEROUS)]] == ["s"] * len(DANGEROUS)
    # XML keeps no bare carriage return (it reads back as a line feed): the only value XLSX cannot carry exactly
    assert [c.value for c in cells[:len(DANGEROUS)]] == [d.replace("\r", "\n") for d in DANGEROUS]
    assert all(c.quotePrefix for c in cells[:len(DANGEROUS)])
    assert cells[-2].value == "控制\ufffd字符" and cells[-1].value == 7
