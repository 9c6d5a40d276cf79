"""Message templates per event name and locale (zh-CN default, en), rendered in a Jinja2 sandbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, Undefined, nodes
from jinja2.sandbox import SandboxedEnvironment

from notify.domain import SHANGHAI

DEFAULT_LOCALE = "zh-CN"
LOCALES = ("zh-CN", "en")


def sh_time(value: Any) -> str:
    """Format an ISO timestamp (or datetime) in Shanghai local time, e.g. 2026-05-01 14:00."""
    if not value:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.strftime("%Y-%m-%d %H:%M")
        return value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
    return str(value)


# Codes the registry sends, worded for Chinese readers (an unknown code is shown as it is); filled further down.
KIND_ZH: dict[str, str] = {}
DISTRICT_ZH: dict[str, str] = {}


def _environment(*, strict: bool = False) -> SandboxedEnvironment:
    env = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined if strict else Undefined,
                               trim_blocks=True, lstrip_blocks=True)
    env.filters["sh_time"] = sh_time
    env.globals["kind_zh"] = KIND_ZH
    env.globals["district_zh"] = DISTRICT_ZH
    return env


ENV = _environment()
STRICT = _environment(strict=True)


class TemplateInvalid(ValueError):
    """A template that does not compile, or tries to reach what the sandbox forbids, or fails to render."""


@dataclass(frozen=True)
class Rendered:
    """A rendered title (inbox title, email subject) and body."""

    title: str
    body: str


T = tuple[str, str]
_BUILTIN: dict[str, dict[str, T]] = {
    "events.registration.confirmed": {
        "zh-CN": ("报名成功：{{ data.activity_title or activity.title_zh }}",
                  "您已成功报名“{{ data.activity_title or activity.title_zh }}”。"
                  "{% if activity.starts_at %}活动开始时间：{{ activity.starts_at | sh_time }}。{% endif %}"),
        "en": ("Registration confirmed: {{ data.activity_title or activity.title_zh }}",
               "Your place at \"{{ data.activity_title or activity.title_zh }}\" is confirmed."),
    },
    "events.registration.waitlisted": {
        "zh-CN": ("已进入候补：{{ data.activity_title or activity.title_zh }}",
                  "“{{ data.activity_title or activity.title_zh }}”名额已满，"
                  "您当前候补第 {{ data.queue_position }} 位。"),
        "en": ("Waitlisted: {{ data.activity_title or activity.title_zh }}",
               "\"{{ data.activity_title or activity.title_zh }}\" is full; you are number "
               "{{ data.queue_position }} on the waiting list."),
    },
    "events.registration.offer_made": {
        "zh-CN": ("候补名额待确认：{{ data.activity_title or activity.title_zh }}",
                  "“{{ data.activity_title or activity.title_zh }}”有空余名额，请在 "
                  "{{ data.offer_expires_at | sh_time }} 前确认，逾期名额将递补给下一位。"),
        "en": ("A seat is offered: {{ data.activity_title or activity.title_zh }}",
               "A seat at \"{{ data.activity_title or activity.title_zh }}\" is yours if you accept before "
               "{{ data.offer_expires_at | sh_time }} (Shanghai time)."),
    },
    "events.registration.offer_expired": {
        "zh-CN": ("候补名额已过期：{{ data.activity_title or activity.title_zh }}",
                  "您未在期限内确认“{{ data.activity_title or activity.title_zh }}”的候补名额，名额已递补给他人。"),
        "en": ("Seat offer expired: {{ data.activity_title or activity.title_zh }}",
               "The seat offered at \"{{ data.activity_title or activity.title_zh }}\" was not accepted in time."),
    },
    "events.registration.promoted": {
        "zh-CN": ("候补转正：{{ data.activity_title or activity.title_zh }}",
                  "您已从候补转为正式报名“{{ data.activity_title or activity.title_zh }}”。"),
        "en": ("Promoted from the waiting list: {{ data.activity_title or activity.title_zh }}",
               "You now hold a confirmed place at \"{{ data.activity_title or activity.title_zh }}\"."),
    },
    "events.registration.withdrawn": {
        "zh-CN": ("已取消报名：{{ data.activity_title or activity.title_zh }}",
                  "您对“{{ data.activity_title or activity.title_zh }}”的报名已取消。"),
        "en": ("Registration withdrawn: {{ data.activity_title or activity.title_zh }}",
               "Your registration for \"{{ data.activity_title or activity.title_zh }}\" was withdrawn."),
    },
    "events.activity.cancelled": {
        "zh-CN": ("活动取消：{{ data.title_zh }}",
                  "很抱歉，原定{% if data.starts_at %}于 {{ data.starts_at | sh_time }} 举行的{% endif %}"
                  "“{{ data.title_zh }}”已取消，您的报名随之失效。"),
        "en": ("Cancelled: {{ data.title_zh }}",
               "\"{{ data.title_zh }}\"{% if data.starts_at %} ({{ data.starts_at | sh_time }}){% endif %} "
               "has been cancelled; your registration no longer applies."),
    },
    "events.competition.results_published": {
        "zh-CN": ("竞赛结果公布：{{ data.title_zh }}",
                  "“{{ data.title_zh }}”结果已公布。{% for r in results %}{{ r.team_name }}：第 {{ r.rank }} 名"
                  "{% if r.award %}（{{ r.award }}）{% endif %}；{% endfor %}"),
        "en": ("Results published: {{ data.title_zh }}",
               "Results of \"{{ data.title_zh }}\" are out.{% for r in results %} {{ r.team_name }}: rank "
               "{{ r.rank }}{% if r.award %} ({{ r.award }}){% endif %};{% endfor %}"),
    },
    "matching.placement.assigned": {
        "zh-CN": ("实习岗位分配结果：{{ data.position_title }}",
                  "在“{{ data.round_name }}”中，您被分配到岗位“{{ data.position_title }}”。"),
        "en": ("Placement: {{ data.position_title }}",
               "In \"{{ data.round_name }}\" you were placed in \"{{ data.position_title }}\"."),
    },
    # Reasons are shown in the reader's language: each code comes with its Chinese and English wording (the English
    # `reason` summary of older events is shown to English readers only).
    "matching.placement.unplaced": {
        "zh-CN": ("实习岗位分配结果：未分配",
                  "在“{{ data.round_name }}”中，您暂未被分配岗位。"
                  "{% if data.reasons %}原因：{% for r in data.reasons %}{{ r.detail_zh }}"
                  "{% if not loop.last %}；{% endif %}{% endfor %}。{% endif %}"),
        "en": ("Placement: not placed",
               "In \"{{ data.round_name }}\" you were not placed."
               "{% if data.reasons %} Reason: {% for r in data.reasons %}{{ r.detail_en }}"
               "{% if not loop.last %}; {% endif %}{% endfor %}.{% elif data.reason %} Reason: {{ data.reason }}"
               "{% endif %}"),
    },
    "registry.institution.registered": {
        "zh-CN": ("新机构入驻：{{ data.name_zh }}",
                  "{{ data.name_zh }}（{{ data.kind }}，{{ data.district }}）已登记到平台。"),
        "en": ("New institution: {{ data.name_zh }}",
               "{{ data.name_zh }} ({{ data.kind }}, {{ data.district }}) joined the registry."),
    },
    "registry.institution.status_changed": {
        "zh-CN": ("机构状态变更：{{ data.name_zh }}", "{{ data.name_zh }} 的状态已变更为 {{ data.status }}。"),
        "en": ("Institution status changed: {{ data.name_zh }}",
               "The status of {{ data.name_zh }} is now {{ data.status }}."),
    },
}

_MATCH_WORDS = {  # event name: (zh-CN, en)
    "proposed": ("收到新的对接提议", "New match proposal"),
    "accepted": ("对接提议已接受", "Match proposal accepted"),
    "declined": ("对接提议被婉拒", "Match proposal declined"),
    "expired": ("对接提议已过期", "Match proposal expired unanswered"),
    "agreed": ("合作协议已达成", "Cooperation agreement reached"),
    "started": ("合作已启动", "Collaboration started"),
    "completed": ("合作已完成", "Collaboration completed"),
}
for _name, (_zh, _en) in _MATCH_WORDS.items():
    _BUILTIN[f"matching.match.{_name}"] = {
        "zh-CN": (f"{_zh}：{{{{ data.opportunity_title }}}}",
                  f"关于“{{{{ data.opportunity_title }}}}”的对接：{_zh}。"),
        "en": (f"{_en}: {{{{ data.opportunity_title }}}}",
               f"About \"{{{{ data.opportunity_title }}}}\": {_en[0].lower() + _en[1:]}."),
    }
# A proposer's withdrawal is published as `cancelled` with data.status `withdrawn`: say which happened.
_BUILTIN["matching.match.cancelled"] = {
    "zh-CN": ("{% if data.status == 'withdrawn' %}对接提议已撤回{% else %}对接已取消{% endif %}"
              "：{{ data.opportunity_title }}",
              "关于“{{ data.opportunity_title }}”的对接"
              "{% if data.status == 'withdrawn' %}提议已由提出方撤回。{% else %}已取消。{% endif %}"),
    "en": ("Match {% if data.status == 'withdrawn' %}proposal withdrawn{% else %}cancelled{% endif %}"
           ": {{ data.opportunity_title }}",
           "{% if data.status == 'withdrawn' %}The proposal on \"{{ data.opportunity_title }}\" was withdrawn by "
           "its proposer.{% else %}The collaboration on \"{{ data.opportunity_title }}\" was cancelled.{% endif %}"),
}

# Certification: each step says what happened, in the words the enterprise needs, with the office's note where it
# gives a reason. `reviewed` carries two outcomes (data.status `reviewed` or `rejected`).
_CERT_NEXT_ZH = "如有疑问，请联系市产教融合协同育人办公室。"
_CERT_NEXT_EN = "Questions: contact the municipal industry-education integration office."
_NOTE_ZH = "{% if data.note %}说明：{{ data.note }}。{% endif %}"
_NOTE_EN = "{% if data.note %} Note: {{ data.note }}.{% endif %}"
_WHO = "{{ data.enterprise_name }}{% if data.batch_name %}（{{ data.batch_name }}）{% endif %}"
_WHO_EN = "{{ data.enterprise_name }}{% if data.batch_name %} ({{ data.batch_name }}){% endif %}"
_CERT: dict[str, tuple[T, T]] = {
    "applied": (("产教融合型企业认定申请已提交：{{ data.enterprise_name }}",
                 f"{_WHO}的认定申请已提交，办公室审核后将通知结果。"),
                ("Certification application submitted: {{ data.enterprise_name }}",
                 f"{_WHO_EN} applied for certification; the office will review it and tell you the outcome.")),
    "reviewed": (("{% if data.status == 'rejected' %}产教融合型企业认定申请未通过审核{% else %}"
                  "产教融合型企业认定申请已通过审核{% endif %}：{{ data.enterprise_name }}",
                  "{% if data.status == 'rejected' %}"
                  f"很遗憾，{_WHO}的认定申请未通过审核。"
                  "{% if data.note %}原因：{{ data.note }}。{% endif %}"
                  f"您可按意见完善材料后，在后续批次重新申请。{_CERT_NEXT_ZH}"
                  "{% else %}"
                  f"{_WHO}的认定申请已通过审核，等待认定决定。{_NOTE_ZH}"
                  "{% endif %}"),
                 ("{% if data.status == 'rejected' %}Certification application rejected{% else %}"
                  "Certification application passed review{% endif %}: {{ data.enterprise_name }}",
                  "{% if data.status == 'rejected' %}"
                  f"The certification application of {_WHO_EN} did not pass review."
                  "{% if data.note %} Reason: {{ data.note }}.{% endif %}"
                  f" You may improve the application and apply again in a later batch. {_CERT_NEXT_EN}"
                  "{% else %}"
                  f"The certification application of {_WHO_EN} passed review and awaits the decision.{_NOTE_EN}"
                  "{% endif %}")),
    "certified": (("产教融合型企业认定通过：{{ data.enterprise_name }}",
                   f"{_WHO}已通过产教融合型企业认定，公示后列入名单。{_NOTE_ZH}"),
                  ("Certified: {{ data.enterprise_name }}",
                   f"{_WHO_EN} is certified as an industry-education integration enterprise; it joins the public "
                   f"list once announced.{_NOTE_EN}")),
    "announced": (("产教融合型企业认定结果公示：{{ data.enterprise_name }}",
                   f"{_WHO}已列入公示名单。"
                   "{% if data.objection_deadline %}公示期至 {{ data.objection_deadline | sh_time }}。{% endif %}"),
                  ("Certification announced: {{ data.enterprise_name }}",
                   f"{_WHO_EN} is on the public list."
                   "{% if data.objection_deadline %} Objections may be raised until "
                   "{{ data.objection_deadline | sh_time }} (Shanghai time).{% endif %}")),
    "objection_raised": (("公示期收到异议：{{ data.enterprise_name }}",
                          f"{_WHO}在公示期内收到异议，办公室将核查后作出决定。{_NOTE_ZH}"),
                         ("Objection raised: {{ data.enterprise_name }}",
                          f"An objection to {_WHO_EN} was raised during the publicity window; the office will "
                          f"investigate and decide.{_NOTE_EN}")),
    "evaluated": (("产教融合型企业年度评价完成：{{ data.enterprise_name }}",
                   f"{_WHO}的年度评价已完成"
                   "{% if data.evaluation_result %}，结果：{{ data.evaluation_result }}{% endif %}。"),
                  ("Annual evaluation complete: {{ data.enterprise_name }}",
                   f"The annual evaluation of {_WHO_EN} is complete"
                   "{% if data.evaluation_result %}: {{ data.evaluation_result }}{% endif %}.")),
    "rectification_required": (("产教融合型企业需要整改：{{ data.enterprise_name }}",
                                f"{_WHO}的年度评价要求整改。{_NOTE_ZH}请在规定期限内完成整改并提交材料。"
                                f"{_CERT_NEXT_ZH}"),
                               ("Rectification required: {{ data.enterprise_name }}",
                                f"The annual evaluation of {_WHO_EN} requires rectification.{_NOTE_EN} Complete it "
                                f"within the set period and submit the evidence. {_CERT_NEXT_EN}")),
    "withdrawn": (("产教融合型企业认定已撤回：{{ data.enterprise_name }}", f"{_WHO}已退出认定。{_NOTE_ZH}"),
                  ("Certification withdrawn: {{ data.enterprise_name }}",
                   f"{_WHO_EN} has left the certification scheme.{_NOTE_EN}")),
    "revoked": (("产教融合型企业认定资格已撤销：{{ data.enterprise_name }}",
                 f"{_WHO}的产教融合型企业认定资格已被撤销。"
                 "{% if data.note %}原因：{{ data.note }}。{% endif %}"
                 f"{_CERT_NEXT_ZH}"),
                ("Certification revoked: {{ data.enterprise_name }}",
                 f"The certification of {_WHO_EN} has been revoked."
                 "{% if data.note %} Reason: {{ data.note }}.{% endif %}"
                 f" {_CERT_NEXT_EN}")),
}
for _status, (_zh, _en) in _CERT.items():
    _BUILTIN[f"registry.certification.{_status}"] = {"zh-CN": _zh, "en": _en}

KIND_ZH.update({"university": "本科高校", "vocational_secondary": "中职学校", "vocational_higher": "高职院校",
           "vocational_bachelor": "职业本科", "technician_college": "技工院校", "enterprise": "企业",
           "industry_association": "行业协会", "research_institute": "科研院所"})
DISTRICT_ZH.update({"huangpu": "黄浦区", "xuhui": "徐汇区", "changning": "长宁区", "jingan": "静安区",
                    "putuo": "普陀区",
               "hongkou": "虹口区", "yangpu": "杨浦区", "minhang": "闵行区", "baoshan": "宝山区", "jiading": "嘉定区",
               "pudong": "浦东新区", "jinshan": "金山区", "songjiang": "松江区", "qingpu": "青浦区",
               "fengxian": "奉贤区", "chongming": "崇明区", "lingang": "临港新片区"})
_BUILTIN["registry.institution.registered"]["zh-CN"] = (
    "新机构入驻：{{ data.name_zh }}",
    "{{ data.name_zh }}（{{ kind_zh.get(data.kind, data.kind) }}，{{ district_zh.get(data.district, data.district) }}）"
    "已登记到平台。")

_INSTITUTION_STATUS_ZH = ("{{ {'active': '正常', 'inactive': '暂停', 'withdrawn': '已退出'}"
                          ".get(data.status, data.status) }}")
_BUILTIN["registry.institution.status_changed"]["zh-CN"] = (
    "机构状态变更：{{ data.name_zh }}", f"{{{{ data.name_zh }}}} 的状态已变更为“{_INSTITUTION_STATUS_ZH}”。")

DIGEST: dict[str, T] = {
    "zh-CN": ("进展动态汇总（{{ items | length }} 条）",
              "{% for i in items %}· {{ i.title }}\n  {{ i.body }}\n{% endfor %}"),
    "en": ("Digest of {{ items | length }} updates",
           "{% for i in items %}- {{ i.title }}\n  {{ i.body }}\n{% endfor %}"),
}

INBOX_DIGEST: dict[str, T] = {
    "zh-CN": ("平台动态汇总（{{ items | length }} 条）", "{% for i in items %}· {{ i.title }}\n{% endfor %}"),
    "en": ("Platform digest of {{ items | length }} updates", "{% for i in items %}- {{ i.title }}\n{% endfor %}"),
}

SAMPLES: dict[str, dict[str, Any]] = {
    "events": {"activity_title": "2026 集成电路产教融合专场招聘会", "title_zh": "2026 集成电路产教融合专场招聘会",
               "starts_at": "2026-05-20T06:00:00+00:00", "queue_position": 3,
               "offer_expires_at": "2026-05-18T10:00:00+00:00", "results": []},
    "matching": {"opportunity_title": "智能制造现代产业学院共建", "round_name": "2026 春季实习分配",
                 "position_title": "芯片测试工程师助理", "reason": None},
    "registry": {"name_zh": "上海临港经济发展（集团）有限公司", "kind": "enterprise", "district": "lingang",
                 "status": "active", "enterprise_name": "上海临港经济发展（集团）有限公司",
                 "batch_name": "2026 年第一批", "evaluation_result": None, "note": None,
                 "objection_deadline": None},
}


def builtin(event: str, locale: str) -> T | None:
    """The built-in (title, body) source for an event name and locale, falling back to zh-CN."""
    per = _BUILTIN.get(event)
    if per is None:
        return None
    return per.get(locale) or per[DEFAULT_LOCALE]


def builtin_events() -> list[str]:
    """Every event name that has a built-in template."""
    return sorted(_BUILTIN)


def sample_context(event: str) -> dict[str, Any]:
    """Example data to preview a template with."""
    data = dict(SAMPLES.get(event.split(".", 1)[0], {}))
    return {"data": data, "activity": {"title_zh": data.get("activity_title"), "starts_at": data.get("starts_at")},
            "results": data.get("results", []), "event": {"name": event}}


@lru_cache(maxsize=512)
def _compiled(source: str, strict: bool = False) -> Template:
    """Compile once per distinct source (compiling costs far more than rendering)."""
    return (STRICT if strict else ENV).from_string(source)


def check(source: str) -> None:
    """Compile a template in the sandbox; TemplateInvalid names the defect."""
    try:
        ENV.from_string(source)
    except TemplateError as exc:
        raise TemplateInvalid(f"template does not compile: {exc}") from exc


# --- rendering, memoised on what a template actually reads -----------------------------------------------------
#
# A fan-out or a burst of registrations renders the same template with contexts that differ only in fields the
# template never reads (ids, participants). The key is the template source plus the values of the context paths it
# reads (`data.activity_title`, or a whole name such as `results`), so a hit is exactly what rendering would produce.

_NONDETERMINISTIC = frozenset({"random", "lipsum"})
_RENDERED: dict[tuple, Rendered] = {}
_RENDERED_MAX = 4096


class _Uncacheable(Exception):
    """A context value whose rendering could depend on more than its JSON value (caching would be unsafe)."""


@lru_cache(maxsize=512)
def _reads(source: str) -> tuple[tuple[str, ...], ...] | None:
    """The context paths a template reads: (name,) or (name, attribute); None when it must not be memoised."""
    try:
        tree = ENV.parse(source)
    except TemplateError:
        return None
    if any(f.name in _NONDETERMINISTIC for f in tree.find_all(nodes.Filter)):
        return None
    paths: set[tuple[str, ...]] = set()
    bases: set[int] = set()
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.ctx == "load":
            bases.add(id(node.node))
            paths.add((node.node.name, node.attr))
    for node in tree.find_all(nodes.Name):
        if node.name in _NONDETERMINISTIC:
            return None
        if node.ctx == "load" and id(node) not in bases:
            paths.add((node.name,))
    return tuple(sorted(paths))


def _frozen(value: Any) -> Any:
    """A hashable, type-exact image of a JSON-like value (True, 1 and 1.0 stay distinct)."""
    t = type(value)
    if value is None or t in (str, int, float, bool):
        return (t.__name__, value)
    if t is dict:
        if not all(type(k) is str for k in value):
            raise _Uncacheable
        return ("d", tuple(sorted((k, _frozen(v)) for k, v in value.items())))
    if t in (list, tuple):
        return (t.__name__, tuple(_frozen(v) for v in value))
    raise _Uncacheable


_MISSING = ("missing",)


def _key(source: T, context: dict[str, Any], strict: bool) -> tuple | None:
    parts: list[Any] = [source, strict]
    for text in source:
        paths = _reads(text)
        if paths is None:
            return None
        for path in paths:
            value = context.get(path[0], _MISSING)
            if len(path) == 2 and type(value) is dict and not hasattr(dict, path[1]):  # data.items() reads all
                value = value.get(path[1], _MISSING)
            parts.append((path, value if value is _MISSING else _frozen(value)))
    return tuple(parts)


def render(source: T, context: dict[str, Any], *, strict: bool = False) -> Rendered:
    """Render (title, body) in the sandbox; unsafe access (or, strict, any undefined name) raises TemplateInvalid.

    Delivery renders leniently (a missing optional field prints nothing; an unsafe attribute too); previews and
    administrators' overrides render strictly, so a template that tries Python internals is refused with a reason.
    Results are memoised per template and the values it reads (see above).
    """
    try:
        key = _key(source, context, strict)
    except _Uncacheable:
        key = None
    if key is not None:
        hit = _RENDERED.get(key)
        if hit is not None:
            return hit
    out = _render(source, context, strict)
    if key is not None:
        if len(_RENDERED) >= _RENDERED_MAX:
            _RENDERED.clear()
        _RENDERED[key] = out
    return out


def _render(source: T, context: dict[str, Any], strict: bool) -> Rendered:
    try:
        title = _compiled(source[0], strict).render(context)
        body = _compiled(source[1], strict).render(context)
    except TemplateError as exc:  # SecurityError is a TemplateError
        raise TemplateInvalid(f"{exc.__class__.__name__}: {exc}") from exc
    except Exception as exc:  # a template may divide by zero or call a filter wrongly; it must not stop the service
        raise TemplateInvalid(f"rendering failed: {exc!r}") from exc
    return Rendered(title=" ".join(title.split())[:300], body=body.strip()[:4000])


def fallback(event: str, context: dict[str, Any]) -> Rendered:
    """A plain message for an event without a template (so nothing is silently dropped)."""
    return Rendered(title=f"平台通知：{event}", body=str(context.get("data", ""))[:4000])
