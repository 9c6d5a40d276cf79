"""Templates: every rule has one in both locales, rendering is sandboxed."""

from __future__ import annotations

import pytest

from notify import templates
from notify.dispatch import render_for
from notify.domain import RULES

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("event", sorted(RULES))
@pytest.mark.parametrize("locale", templates.LOCALES)
def test_every_rule_has_a_template_that_renders_with_sample_data(event, locale):
    src = templates.builtin(event, locale)
    assert src is not None
    out = templates.render(src, templates.sample_context(event))
    assert out.title and out.body


def test_english_is_chosen_per_locale_and_chinese_is_the_default():
    ctx = {"data": {"title_zh": "集成电路专场招聘会", "starts_at": "2026-05-20T06:00:00+00:00"}}
    zh = templates.render(templates.builtin("events.activity.cancelled", "zh-CN"), ctx)
    en = templates.render(templates.builtin("events.activity.cancelled", "en"), ctx)
    assert zh.title == "活动取消：集成电路专场招聘会" and "2026-05-20 14:00" in zh.body
    assert en.title.startswith("Cancelled:") and "2026-05-20 14:00" in en.body


@pytest.mark.parametrize("evil", [
    "{{ data.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__base__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
])
def test_templates_cannot_reach_python_internals(evil):
    with pytest.raises(templates.TemplateInvalid):
        templates.render((evil, "x"), {"data": {}}, strict=True)
    try:  # delivery renders leniently: it may print nothing, but never an internal object
        lenient = templates.render((evil, "x"), {"data": {}})
    except templates.TemplateInvalid:
        return
    assert "class" not in lenient.title and "function" not in lenient.title


def test_a_broken_override_falls_back_to_a_plain_message_instead_of_dropping_it():
    out = render_for("matching.match.proposed", "zh-CN", {"data": {"x": 1}},
                     {("matching.match.proposed", "zh-CN"): ("{{ 1/0 }}", "b")})
    assert "matching.match.proposed" in out.title


def test_memoised_rendering_depends_on_exactly_the_fields_a_template_reads():
    src = templates.builtin("events.registration.confirmed", "zh-CN")
    a = templates.render(src, {"data": {"activity_title": "招聘会", "participant_id": "u-1"}, "activity": {}})
    b = templates.render(src, {"data": {"activity_title": "招聘会", "participant_id": "u-2"}, "activity": {}})
    c = templates.render(src, {"data": {"activity_title": "宣讲会", "participant_id": "u-1"}, "activity": {}})
    assert a == b and a.title == "报名成功：招聘会" and c.title == "报名成功：宣讲会"
    whole = ("{{ data.items() | list | length }}", "{{ data['n'] }} {{ 1 if flag == 1 else 0 }}")
    assert templates.render(whole, {"data": {"n": 1}, "flag": True}).title == "1"
    assert templates.render(whole, {"data": {"n": 1, "m": 2}, "flag": 1}).title == "2"
    assert templates.render(whole, {"data": {"n": 3}, "flag": 1}).body == "3 1"


def test_templates_that_could_differ_between_renders_are_not_memoised():
    assert templates._reads("{{ [1, 2, 3] | random }}") is None
    assert templates._reads("{{ lipsum(1) }}") is None


def _cert(status: str, note: str | None = None) -> dict:
    return {"data": {"enterprise_name": "上海临港智造有限公司", "batch_name": "2026 年第一批", "status": status,
                     "note": note, "evaluation_result": None, "objection_deadline": None}}


def test_a_rejected_certification_review_says_rejected_with_the_reason_at_normal_priority():
    rule = RULES["registry.certification.reviewed"]
    assert rule.category_for(_cert("rejected")["data"]) == "certification"
    assert rule.category_for(_cert("reviewed")["data"]) == "progress"
    zh = render_for("registry.certification.reviewed", "zh-CN", _cert("rejected", "申报材料缺少年度合作报告"), {})
    assert "未通过审核" in zh.title and "已审核" not in zh.title
    assert "原因：申报材料缺少年度合作报告" in zh.body and "重新申请" in zh.body
    en = render_for("registry.certification.reviewed", "en", _cert("rejected", "missing report"), {})
    assert "rejected" in en.title and "Reason: missing report" in en.body and "apply again" in en.body
    passed = render_for("registry.certification.reviewed", "zh-CN", _cert("reviewed"), {})
    assert "已通过审核" in passed.title and "未通过" not in passed.body


@pytest.mark.parametrize("event", sorted(e for e in RULES if e.startswith("registry.certification.")))
def test_every_certification_message_names_what_happened_not_a_status_code(event):
    status = event.rsplit(".", 1)[1]
    for locale in templates.LOCALES:
        out = render_for(event, locale, _cert(status), {})
        text = out.title + out.body
        assert "None" not in text and "{{" not in text
        if locale == "zh-CN":
            assert not any(word in text for word in ("rejected", "reviewed", "rectification", "objection_raised"))


def test_institution_status_is_worded_in_chinese():
    out = render_for("registry.institution.status_changed", "zh-CN",
                     {"data": {"name_zh": "上海电机学院", "status": "inactive"}}, {})
    assert "暂停" in out.body and "inactive" not in out.body


def test_a_placement_reason_is_shown_in_the_readers_language():
    english = "数控加工实习岗 filled its 1 seats with 1 higher-standing applicants"
    data = {"round_name": "2026 春季实习分配", "reason": english, "reasons": [
        {"code": "full_of_higher_ranked", "position_id": "p1", "detail_en": english,
         "detail_zh": "“数控加工实习岗”的 1 个名额已由 1 位排名更靠前的申请人占满"}]}
    zh = render_for("matching.placement.unplaced", "zh-CN", {"data": data}, {})
    assert "原因：“数控加工实习岗”的 1 个名额已由 1 位排名更靠前的申请人占满。" in zh.body
    assert "filled" not in zh.body and "seats" not in zh.body
    en = render_for("matching.placement.unplaced", "en", {"data": data}, {})
    assert "Reason: 数控加工实习岗 filled its 1 seats" in en.body
    older = render_for("matching.placement.unplaced", "zh-CN", {"data": {**data, "reasons": []}}, {})
    assert "filled" not in older.body, "an English-only reason is not shown to a Chinese reader"


def test_a_new_institution_is_worded_in_chinese_for_chinese_readers():
    data = {"data": {"name_zh": "上海临港智造有限公司", "kind": "enterprise", "district": "lingang"}}
    zh = render_for("registry.institution.registered", "zh-CN", data, {})
    assert zh.body == "上海临港智造有限公司（企业，临港新片区）已登记到平台。"


def test_a_withdrawn_proposal_reads_as_withdrawn_not_as_a_cancelled_collaboration():
    def match(status: str) -> dict:
        return {"data": {"opportunity_title": "数控订单班", "status": status}}

    zh = render_for("matching.match.cancelled", "zh-CN", match("withdrawn"), {})
    assert zh.title == "对接提议已撤回：数控订单班" and "撤回" in zh.body and "取消" not in zh.title + zh.body
    en = render_for("matching.match.cancelled", "en", match("withdrawn"), {})
    assert "withdrawn by its proposer" in en.body and "cancelled" not in en.title + en.body
    cancelled = render_for("matching.match.cancelled", "zh-CN", match("cancelled"), {})
    assert cancelled.title == "对接已取消：数控订单班" and "撤回" not in cancelled.body


@pytest.mark.parametrize("event", sorted(e for e in RULES if e.startswith("matching.match.")))
def test_every_english_match_notice_is_a_sentence_not_a_status_code(event):
    out = render_for(event, "en", {"data": {"opportunity_title": "CNC order class", "status": "in_progress"}}, {})
    assert "is now" not in out.body and "_" not in out.title + out.body and "CNC order class" in out.title
