"""Competition open data: a team or institution name never runs as a spreadsheet formula."""

from __future__ import annotations

import csv
import io

import pytest

from common.spreadsheet import restore
from events.competitions import OPEN_DATA_FIELDS, results_csv

pytestmark = pytest.mark.unit


def test_team_and_institution_names_that_would_start_a_formula_are_neutralised():
    text = results_csv([{"track_name": "赛道", "rank": 1, "team_name": '=HYPERLINK("http://evil.example","x")',
                         "institution_name": "@SUM(1)", "score": -1.5, "award": "一等奖", "team_id": "t",
                         "institution_id": "i", "track_id": "k"}])
    [header, row] = list(csv.reader(io.StringIO(text.lstrip("\ufeff"), newline="")))
    assert header == OPEN_DATA_FIELDS
    cells = dict(zip(header, row, strict=True))
    assert cells["team_name"].startswith("'=") and cells["institution_name"] == "'@SUM(1)"
    assert restore(cells["team_name"]) == '=HYPERLINK("http://evil.example","x")'
    assert cells["score"] == "-1.5", "numbers stay numbers"
