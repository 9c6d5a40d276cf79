"""The registry's pure rules: identifiers, versioning, search grams and the certification lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common.errors import InvalidTransition, PreconditionFailed, PreconditionRequired
from registry.domain import (
    CERT_TRANSITIONS,
    CertAction,
    CertStatus,
    District,
    Industry,
    allowed_cert_actions,
    check_if_match,
    complete_uscc,
    diff,
    district_from,
    industry_from,
    mask_id_number,
    name_grams,
    next_cert_status,
    query_grams,
    redact_changes,
    school_code_problem,
    uscc_check_char,
    uscc_problem,
)

pytestmark = pytest.mark.unit


def test_the_standards_worked_example_is_valid_and_its_altered_copy_is_not():
    assert uscc_problem("91350100M000100Y43") is None
    assert "check character" in uscc_problem("91350100M000100Y4A")
    assert "letters" in uscc_problem("91350100M000100Y4Z")
    assert "18 characters" in uscc_problem("9135")


def test_complete_uscc_appends_the_gb32100_check_character():
    assert uscc_check_char("91350100M000100Y4") == "3"
    code = complete_uscc("91310115MA1K4ABCD")
    assert uscc_problem(code) is None and code.startswith("91310115MA1K4ABCD")


def test_school_codes_are_ten_digits():
    assert school_code_problem("4131010246") is None
    assert school_code_problem("413101024") is not None
    assert school_code_problem("413101024X") is not None


def test_districts_and_industries_accept_codes_and_chinese_names():
    assert district_from("浦东新区") == District.PUDONG
    assert district_from("LINGANG") == District.LINGANG
    assert district_from("北京") is None
    assert industry_from("生物医药") == Industry.BIOMEDICINE
    assert industry_from("integrated_circuits") == Industry.INTEGRATED_CIRCUITS
    assert industry_from("养殖") is None


def test_if_match_is_required_and_must_name_the_current_version():
    with pytest.raises(PreconditionRequired):
        check_if_match(None, 3)
    with pytest.raises(PreconditionFailed) as exc:
        check_if_match('"2"', 3)
    assert exc.value.extensions["current_etag"] == '"3"'
    check_if_match('"3"', 3)
    check_if_match('W/"3"', 3)
    check_if_match('"1", "3"', 3)
    check_if_match("*", 3)


def test_diff_and_redaction_keep_field_names_but_hide_personal_values():
    changes = diff({"name_zh": "甲", "contact_phone": "1"}, {"name_zh": "乙", "contact_phone": "2", "website": None})
    assert changes == {"name_zh": ["甲", "乙"], "contact_phone": ["1", "2"]}
    assert redact_changes(changes)["contact_phone"] == ["***", "***"]


def test_name_grams_cover_every_substring_query():
    grams = set(name_grams("上海电机学院", "Shanghai Dianji University"))
    for q in ("电机", "机", "上海电机学院", "dianji", "电机学"):
        assert set(query_grams(q)) <= grams
    assert not set(query_grams("电学机")) <= grams or "电学" in grams


def test_id_numbers_are_masked():
    assert mask_id_number("310101199001011234") == "310*************34"
    assert mask_id_number(None) is None


HAPPY_PATH = [
    (CertAction.APPLY, CertStatus.APPLIED), (CertAction.APPROVE, CertStatus.REVIEWED),
    (CertAction.CERTIFY, CertStatus.CERTIFIED), (CertAction.ANNOUNCE, CertStatus.ANNOUNCED),
    (CertAction.EVALUATE_RECTIFY, CertStatus.RECTIFYING), (CertAction.EVALUATE_PASS, CertStatus.ANNOUNCED),
    (CertAction.EVALUATE_FAIL, CertStatus.REVOKED),
]


def test_the_lifecycle_runs_from_the_pool_to_revocation():
    status = CertStatus.POOLED
    for action, expected in HAPPY_PATH:
        status = next_cert_status(status, action)
        assert status == expected


@pytest.mark.parametrize("status", list(CertStatus))
@pytest.mark.parametrize("action", list(CertAction))
def test_every_transition_not_in_the_table_is_refused_naming_the_allowed_ones(status, action):
    if (status, action) in CERT_TRANSITIONS:
        assert next_cert_status(status, action) == CERT_TRANSITIONS[(status, action)]
        return
    with pytest.raises(InvalidTransition) as exc:
        next_cert_status(status, action)
    assert exc.value.status == 409
    assert exc.value.extensions["allowed"] == allowed_cert_actions(status)
    assert action.value not in exc.value.extensions["allowed"]


def test_final_states_allow_nothing():
    assert allowed_cert_actions(CertStatus.REVOKED) == []
    assert allowed_cert_actions(CertStatus.WITHDRAWN) == []


def test_objections_are_accepted_only_inside_the_publicity_window():
    deadline = datetime(2026, 6, 10, tzinfo=UTC)
    assert next_cert_status(CertStatus.ANNOUNCED, CertAction.OBJECT, now=deadline - timedelta(hours=1),
                            objection_deadline=deadline) == CertStatus.OBJECTED
    with pytest.raises(InvalidTransition) as exc:
        next_cert_status(CertStatus.ANNOUNCED, CertAction.OBJECT, now=deadline + timedelta(seconds=1),
                         objection_deadline=deadline)
    assert "object" not in exc.value.extensions["allowed"]


def test_seed_identifiers_are_valid_and_unique():
    from registry.schemas import InstitutionCreate
    from registry.seed import NAMED, generated_enterprises

    bodies = [*NAMED, *generated_enterprises(500)]
    for body in bodies:
        InstitutionCreate.model_validate(body)
    usccs = [b["uscc"] for b in bodies if b.get("uscc")]
    assert len(usccs) == len(set(usccs))
    names = {b["name_zh"] for b in NAMED}
    assert {"上海电机学院", "上海海事大学", "上海海洋大学", "上海电力大学", "上海建桥学院"} <= names


def test_a_sheet_row_accepts_chinese_districts_and_industries_and_list_separators():
    from registry.transfer import row_to_create

    row = row_to_create({
        "kind": "enterprise", "name_zh": "上海表格企业有限公司", "uscc": complete_uscc("91310115MA1K4ABCD"),
        "district": "浦东新区", "industries": "集成电路；artificial_intelligence", "keywords": "芯片|设计",
    })
    assert row.district == District.PUDONG
    assert row.industries == [Industry.INTEGRATED_CIRCUITS, Industry.ARTIFICIAL_INTELLIGENCE]
    assert row.keywords == ["芯片", "设计"]
