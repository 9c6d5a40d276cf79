"""List cells of the institutions sheet: items come back exactly, commas and separators included."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.transfer import join_list, split_list

pytestmark = pytest.mark.unit


def test_a_keyword_containing_a_comma_stays_one_keyword():
    assert split_list(join_list(["船舶, 海工", "港口"])) == ["船舶, 海工", "港口"]


@pytest.mark.parametrize("items", [
    ["a;b", "c；d", "e\nf", "g|h"], ["back\\slash", "\\"], [" padded ", "\ttab"], ["单个"], [],
])
def test_separators_backslashes_and_surrounding_spaces_survive(items):
    assert split_list(join_list(items)) == items


def test_hand_written_cells_split_on_semicolons_and_drop_the_spaces_around_items():
    assert split_list("集成电路; 人工智能；生物医药") == ["集成电路", "人工智能", "生物医药"]
    assert split_list("  ") == []


@given(st.lists(st.text(min_size=1).filter(lambda t: t.strip() or "\\" in t), max_size=6))
def test_every_list_of_non_blank_items_round_trips(items):
    items = [i for i in items if i.strip()]
    assert split_list(join_list(items)) == items
