"""School codes and USCCs are compared in one canonical form: full-width input is the same code; other scripts'
digits are refused with a clear message."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from registry.domain import complete_uscc
from registry.schemas import InstitutionCreate

pytestmark = pytest.mark.unit

FULL_WIDTH = {ord(c): ord(c) + 0xFEE0 for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}  # U+FF10.. and U+FF21..


def _school(code: str) -> InstitutionCreate:
    return InstitutionCreate(kind="university", name_zh="上海测试大学", school_code=code, district="yangpu")


def test_a_full_width_school_code_is_stored_as_its_ascii_code():
    assert _school("４１３１０１０２５４").school_code == "4131010254"
    assert _school(" 4131010254 ").school_code == "4131010254"


def test_a_school_code_in_arabic_indic_digits_is_refused_naming_the_digit():
    with pytest.raises(ValidationError, match="digits 0-9"):
        _school("٤١٣١٠١٠٢٥٤")


def test_a_uscc_with_some_full_width_characters_is_the_same_uscc():
    uscc = complete_uscc("91310115MA1K4ABCD")
    mixed = uscc[:9].translate(FULL_WIDTH) + uscc[9:].lower()
    made = InstitutionCreate(kind="enterprise", name_zh="上海全角企业有限公司", uscc=mixed, district="pudong")
    assert made.uscc == uscc


def test_a_uscc_with_foreign_digits_gets_a_clear_message_not_a_lookup_error():
    uscc = complete_uscc("91310115MA1K4ABCD")
    with pytest.raises(ValidationError, match="digits 0-9"):
        InstitutionCreate(kind="enterprise", name_zh="上海外文数字企业", uscc="٩" + uscc[1:], district="pudong")
