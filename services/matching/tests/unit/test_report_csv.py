"""The supply-demand report's CSV goes through the shared formula neutralisation."""

from __future__ import annotations

import pytest

from matching.service import REPORT_COLUMNS, report_csv

pytestmark = pytest.mark.unit


def test_report_cells_that_would_start_a_formula_are_quoted_and_numbers_are_not():
    row = dict.fromkeys(REPORT_COLUMNS, 0)
    row.update({REPORT_COLUMNS[0]: "=1+1", REPORT_COLUMNS[-1]: -3})
    lines = report_csv({"rows": [row]}).lstrip("\ufeff").splitlines()
    assert lines[0] == ",".join(REPORT_COLUMNS)
    assert lines[1].startswith("'=1+1,") and lines[1].endswith(",-3")
