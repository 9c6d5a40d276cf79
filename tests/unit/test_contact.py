"""One validator for email addresses and phone numbers, used wherever they enter the platform."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from common.contact import email_problem, mobile_problem, normalize_email, normalize_phone, phone_problem
from events.schemas import RegistrationCreate
from matching.schemas import OpportunityBase
from notify.schemas import ProfileUpdate
from registry.schemas import InstitutionCreate, InstitutionUpdate, MentorCreate, MentorUpdate

pytestmark = pytest.mark.unit

GOOD_EMAILS = ["wang@example.cn", "li.si+cjrh@mail.sdju.edu.cn", "o'brien@example.com", "x@例子.中国"]
BAD_EMAILS = {
    "x@y.cn\r\nBcc: victim@example.com": "line break",
    "not-an-email": "exactly one @",
    "a@b@example.cn": "exactly one @",
    "@example.cn": "before @",
    "wang@": "not a host name",
    "wang@localhost": "not a host name",
    "wang..li@example.cn": "before @",
    "wang li@example.cn": "space",
    "wang@example.123": "no top-level name",
    "wang@-example.cn": "not a host name",
    "x" * 65 + "@example.cn": "before @",
}


@pytest.mark.parametrize("address", GOOD_EMAILS)
def test_ordinary_addresses_are_accepted(address):
    assert email_problem(address) is None


@pytest.mark.parametrize("address, why", BAD_EMAILS.items())
def test_addresses_that_can_never_work_are_refused_with_the_reason(address, why):
    assert why in email_problem(address)
    with pytest.raises(ValueError, match="not a usable email address"):
        normalize_email(address)


def test_an_email_domain_is_lower_cased_and_the_address_trimmed():
    assert normalize_email("  Wang.Li@Example.CN ") == "Wang.Li@example.cn"


@pytest.mark.parametrize("number, normal", [
    ("138 0000 1234", "13800001234"), ("+86 138-0000-1234", "+8613800001234"), ("021-12345678", "02112345678"),
    ("１３８００００１２３４", "13800001234"), ("+44 20 7946 0958", "+442079460958"),
    ("(0571) 8765 4321", "057187654321"),
])
def test_phone_numbers_are_accepted_in_their_usual_spellings(number, normal):
    assert normalize_phone(number) == normal


@pytest.mark.parametrize("number", ["1", "not-a-phone", "12345678901", "+0123456", "138000012345", "13800001234\n"
                                    "Bcc"])
def test_strings_that_are_no_phone_number_are_refused(number):
    assert phone_problem(number)
    with pytest.raises(ValueError, match="not a usable phone number"):
        normalize_phone(number)


def test_a_landline_cannot_receive_sms():
    assert mobile_problem("13800001234") is None and mobile_problem("+8613800001234") is None
    assert "landline" in mobile_problem("021-12345678")


@pytest.mark.parametrize("model, fields", [
    (InstitutionCreate, {"kind": "enterprise", "name_zh": "上海测试有限公司", "uscc": "91310000132214209T",
                         "district": "pudong"}),
    (InstitutionUpdate, {}),
    (MentorCreate, {"institution_id": "i", "title": "industry_mentor", "name": "王工"}),
    (MentorUpdate, {}),
    (ProfileUpdate, {}),
    (OpportunityBase, {"title_zh": "芯片测试岗位"}),
    (RegistrationCreate, {}),
])
def test_every_schema_where_addresses_enter_uses_the_validator(model, fields):
    email_field = next(f for f in ("contact_email", "email") if f in model.model_fields)
    phone_field = next(f for f in ("contact_phone", "phone") if f in model.model_fields)
    with pytest.raises(ValidationError, match="line break"):
        model(**fields, **{email_field: "x@y.cn\r\nBcc: victim@example.com"})
    with pytest.raises(ValidationError, match="not a usable phone number"):
        model(**fields, **{phone_field: "not-a-phone"})
    ok = model(**fields, **{email_field: "Wang@Example.CN", phone_field: "138 0000 1234"})
    assert getattr(ok, email_field) == "Wang@example.cn" and getattr(ok, phone_field) == "13800001234"
