"""Pure rules of the registry: identifiers, vocabularies, versioning, search grams, the certification lifecycle.

No I/O here: everything is a function of its arguments, so it is unit-tested without a database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from common.auth import Principal
from common.errors import InvalidTransition, PreconditionFailed, PreconditionRequired
from common.identifiers import foreign_digits

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC_SHAPE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$")
_SCHOOL_CODE = re.compile(r"^[0-9]{10}$")


class InstitutionKind(StrEnum):
    """Kinds of participating institution (see the glossary)."""

    UNIVERSITY = "university"
    VOCATIONAL_SECONDARY = "vocational_secondary"
    VOCATIONAL_HIGHER = "vocational_higher"
    VOCATIONAL_BACHELOR = "vocational_bachelor"
    TECHNICIAN_COLLEGE = "technician_college"
    ENTERPRISE = "enterprise"
    INDUSTRY_ASSOCIATION = "industry_association"
    RESEARCH_INSTITUTE = "research_institute"
    TRAINING_PROVIDER = "training_provider"
    INDUSTRIAL_PARK = "industrial_park"
    GOVERNMENT_AGENCY = "government_agency"


SCHOOL_KINDS = frozenset({
    InstitutionKind.UNIVERSITY, InstitutionKind.VOCATIONAL_SECONDARY, InstitutionKind.VOCATIONAL_HIGHER,
    InstitutionKind.VOCATIONAL_BACHELOR, InstitutionKind.TECHNICIAN_COLLEGE,
})


class District(StrEnum):
    """Shanghai's 16 districts plus the Lingang New Area, which is treated as its own value."""

    HUANGPU = "huangpu"
    XUHUI = "xuhui"
    CHANGNING = "changning"
    JINGAN = "jingan"
    PUTUO = "putuo"
    HONGKOU = "hongkou"
    YANGPU = "yangpu"
    MINHANG = "minhang"
    BAOSHAN = "baoshan"
    JIADING = "jiading"
    PUDONG = "pudong"
    JINSHAN = "jinshan"
    SONGJIANG = "songjiang"
    QINGPU = "qingpu"
    FENGXIAN = "fengxian"
    CHONGMING = "chongming"
    LINGANG = "lingang"


DISTRICT_NAMES_ZH: dict[str, District] = {
    "黄浦区": District.HUANGPU, "徐汇区": District.XUHUI, "长宁区": District.CHANGNING, "静安区": District.JINGAN,
    "普陀区": District.PUTUO, "虹口区": District.HONGKOU, "杨浦区": District.YANGPU, "闵行区": District.MINHANG,
    "宝山区": District.BAOSHAN, "嘉定区": District.JIADING, "浦东新区": District.PUDONG, "金山区": District.JINSHAN,
    "松江区": District.SONGJIANG, "青浦区": District.QINGPU, "奉贤区": District.FENGXIAN, "崇明区": District.CHONGMING,
    "临港新片区": District.LINGANG,
}


class Industry(StrEnum):
    """The controlled industry vocabulary, from the priority industries the policy seeds name."""

    INTEGRATED_CIRCUITS = "integrated_circuits"          # 集成电路
    ARTIFICIAL_INTELLIGENCE = "artificial_intelligence"  # 人工智能
    BIOMEDICINE = "biomedicine"                          # 生物医药
    AEROSPACE = "aerospace"                              # 航空航天
    HIGH_END_EQUIPMENT = "high_end_equipment"            # 高端装备
    INTELLIGENT_MANUFACTURING = "intelligent_manufacturing"  # 智能制造
    NEW_ENERGY_VEHICLES = "new_energy_vehicles"          # 新能源汽车
    NEW_MATERIALS = "new_materials"                      # 新材料
    NEW_ENERGY = "new_energy"                            # 新能源 / 电力
    SHIPPING_LOGISTICS = "shipping_logistics"            # 航运物流
    MARINE = "marine"                                    # 海洋经济
    DIGITAL_ECONOMY = "digital_economy"                  # 数字经济 / 信息技术
    FINANCE = "finance"                                  # 金融
    MODERN_SERVICES = "modern_services"                  # 现代服务业
    GREEN_LOW_CARBON = "green_low_carbon"                # 绿色低碳
    CIVIL_AVIATION = "civil_aviation"                    # 民用航空


INDUSTRY_NAMES_ZH: dict[str, Industry] = {
    "集成电路": Industry.INTEGRATED_CIRCUITS, "人工智能": Industry.ARTIFICIAL_INTELLIGENCE,
    "生物医药": Industry.BIOMEDICINE, "航空航天": Industry.AEROSPACE, "高端装备": Industry.HIGH_END_EQUIPMENT,
    "智能制造": Industry.INTELLIGENT_MANUFACTURING, "新能源汽车": Industry.NEW_ENERGY_VEHICLES,
    "新材料": Industry.NEW_MATERIALS, "新能源": Industry.NEW_ENERGY, "航运物流": Industry.SHIPPING_LOGISTICS,
    "海洋经济": Industry.MARINE, "数字经济": Industry.DIGITAL_ECONOMY, "金融": Industry.FINANCE,
    "现代服务业": Industry.MODERN_SERVICES, "绿色低碳": Industry.GREEN_LOW_CARBON, "民用航空": Industry.CIVIL_AVIATION,
}


class InstitutionStatus(StrEnum):
    """Whether an institution takes part; `withdrawn` records may name a successor (after a merge)."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    WITHDRAWN = "withdrawn"


PERSONAL_FIELDS = ("contact_name", "contact_phone", "contact_email")


# --- identifiers -------------------------------------------------------------------------------------------------

def uscc_check_char(first17: str) -> str:
    """The GB 32100-2015 check character for the first 17 characters of a USCC."""
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def complete_uscc(first17: str) -> str:
    """A full, valid USCC made from its first 17 characters (seed data, tests)."""
    return first17 + uscc_check_char(first17)


def uscc_problem(code: str) -> str | None:
    """Why `code` (in canonical form: see common.identifiers) is not a valid unified social credit code, or None."""
    if (why := foreign_digits(code)) is not None:
        return why
    if len(code) != 18:
        return f"a USCC has 18 characters, got {len(code)}"
    if not _USCC_SHAPE.match(code):
        return "a USCC uses digits and the letters 0-9A-Y except I, O, S, V, Z; positions 3-8 are digits"
    expected = uscc_check_char(code[:17])
    if code[17] != expected:
        return f"check character is {code[17]!r} but GB 32100-2015 gives {expected!r}"
    return None


def school_code_problem(code: str) -> str | None:
    """Why `code` (in canonical form) is not a 10-digit school identification code, or None when it is."""
    if (why := foreign_digits(code)) is not None:
        return why
    if not _SCHOOL_CODE.match(code):
        return "a school identification code has exactly 10 digits (AABBCCCCCC)"
    return None


def district_from(value: str) -> District | None:
    """A district from its code (`pudong`) or its Chinese name (`浦东新区`), else None."""
    v = value.strip()
    if v.lower() in District._value2member_map_:
        return District(v.lower())
    return DISTRICT_NAMES_ZH.get(v)


def industry_from(value: str) -> Industry | None:
    """An industry from its code (`biomedicine`) or its Chinese name (`生物医药`), else None."""
    v = value.strip()
    if v.lower() in Industry._value2member_map_:
        return Industry(v.lower())
    return INDUSTRY_NAMES_ZH.get(v)


# --- versioning --------------------------------------------------------------------------------------------------

def etag(version: int) -> str:
    """The strong ETag of a record version."""
    return f'"{version}"'


def check_if_match(if_match: str | None, current_version: int) -> None:
    """Refuse a write without If-Match (428) or whose If-Match names another version (412)."""
    if if_match is None or not if_match.strip():
        raise PreconditionRequired("send If-Match with the ETag of the version you edited", current_etag=etag(
            current_version))
    tags = [t.strip() for t in if_match.split(",")]
    if "*" in tags:
        return
    versions = {t.removeprefix("W/").strip('"') for t in tags}
    if str(current_version) not in versions:
        raise PreconditionFailed(
            f"the record changed since you read it: If-Match {if_match}, current ETag {etag(current_version)}",
            current_etag=etag(current_version),
        )


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Fields whose values differ, as {field: [old, new]}."""
    return {k: [before.get(k), after[k]] for k in after if before.get(k) != after[k]}


def redact_changes(changes: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
    """A change set with personal values masked (the field names stay, so an audit still sees what changed)."""
    return {k: (["***", "***"] if k in PERSONAL_FIELDS else v) for k, v in changes.items()}


# --- search ------------------------------------------------------------------------------------------------------

def name_grams(*texts: str | None) -> list[str]:
    """Every 1- and 2-character gram of the names (lower-cased): the index behind substring search."""
    grams: set[str] = set()
    for text in texts:
        if not text:
            continue
        t = text.lower()
        grams.update(c for c in t if not c.isspace())
        grams.update(t[i:i + 2] for i in range(len(t) - 1) if not t[i:i + 2].isspace())
    return sorted(grams)


def query_grams(q: str) -> list[str]:
    """The grams a name must contain to contain `q` as a substring (bigrams, or the single character)."""
    t = q.lower()
    if len(t) == 1:
        return [t]
    return sorted({t[i:i + 2] for i in range(len(t) - 1)})


# --- certified industry-education integration enterprises -------------------------------------------------------

class CertStatus(StrEnum):
    """Where a certified-enterprise file stands in its lifecycle."""

    POOLED = "pooled"              # in the cultivation pool
    APPLIED = "applied"            # applied in a yearly batch
    REVIEWED = "reviewed"          # passed the office's review, awaiting the certification decision
    REJECTED = "rejected"          # did not pass review (may apply again in a later batch)
    CERTIFIED = "certified"        # certified, not yet announced
    ANNOUNCED = "announced"        # on the public list
    OBJECTED = "objected"          # an objection was raised during the publicity window
    RECTIFYING = "rectifying"      # annual evaluation asked for rectification
    WITHDRAWN = "withdrawn"        # left the scheme
    REVOKED = "revoked"            # certification revoked


class CertAction(StrEnum):
    """What can be done to a certified-enterprise file."""

    APPLY = "apply"
    APPROVE = "approve"
    REJECT = "reject"
    CERTIFY = "certify"
    ANNOUNCE = "announce"
    OBJECT = "object"
    DISMISS_OBJECTION = "dismiss_objection"
    UPHOLD_OBJECTION = "uphold_objection"
    EVALUATE_PASS = "evaluate_pass"  # noqa: S105 (an action name, not a secret)
    EVALUATE_RECTIFY = "evaluate_rectify"
    EVALUATE_FAIL = "evaluate_fail"
    WITHDRAW = "withdraw"
    REVOKE = "revoke"


S, A = CertStatus, CertAction
CERT_TRANSITIONS: dict[tuple[CertStatus, CertAction], CertStatus] = {
    (S.POOLED, A.APPLY): S.APPLIED,
    (S.REJECTED, A.APPLY): S.APPLIED,
    (S.APPLIED, A.APPROVE): S.REVIEWED,
    (S.APPLIED, A.REJECT): S.REJECTED,
    (S.REVIEWED, A.CERTIFY): S.CERTIFIED,
    (S.REVIEWED, A.REJECT): S.REJECTED,
    (S.CERTIFIED, A.ANNOUNCE): S.ANNOUNCED,
    (S.ANNOUNCED, A.OBJECT): S.OBJECTED,
    (S.OBJECTED, A.DISMISS_OBJECTION): S.ANNOUNCED,
    (S.OBJECTED, A.UPHOLD_OBJECTION): S.REVOKED,
    (S.ANNOUNCED, A.EVALUATE_PASS): S.ANNOUNCED,
    (S.ANNOUNCED, A.EVALUATE_RECTIFY): S.RECTIFYING,
    (S.ANNOUNCED, A.EVALUATE_FAIL): S.REVOKED,
    (S.RECTIFYING, A.EVALUATE_PASS): S.ANNOUNCED,
    (S.RECTIFYING, A.EVALUATE_RECTIFY): S.RECTIFYING,
    (S.RECTIFYING, A.EVALUATE_FAIL): S.REVOKED,
    **{(s, A.WITHDRAW): S.WITHDRAWN for s in (S.POOLED, S.APPLIED, S.REVIEWED, S.REJECTED, S.CERTIFIED,
                                               S.ANNOUNCED, S.RECTIFYING)},
    **{(s, A.REVOKE): S.REVOKED for s in (S.CERTIFIED, S.ANNOUNCED, S.OBJECTED, S.RECTIFYING)},
}
del S, A

# The event each action publishes (contract names on registry.certification.v1).
CERT_EVENT_FOR_ACTION: dict[CertAction, str] = {
    CertAction.APPLY: "applied", CertAction.APPROVE: "reviewed", CertAction.REJECT: "reviewed",
    CertAction.CERTIFY: "certified", CertAction.ANNOUNCE: "announced", CertAction.OBJECT: "objection_raised",
    CertAction.DISMISS_OBJECTION: "announced", CertAction.UPHOLD_OBJECTION: "revoked",
    CertAction.EVALUATE_PASS: "evaluated", CertAction.EVALUATE_RECTIFY: "rectification_required",
    CertAction.EVALUATE_FAIL: "revoked", CertAction.WITHDRAW: "withdrawn", CertAction.REVOKE: "revoked",
}

EVALUATION_RESULT: dict[CertAction, str] = {
    CertAction.EVALUATE_PASS: "pass", CertAction.EVALUATE_RECTIFY: "rectify", CertAction.EVALUATE_FAIL: "fail",
}

CERTIFIED_STATES = frozenset({CertStatus.CERTIFIED, CertStatus.ANNOUNCED, CertStatus.OBJECTED, CertStatus.RECTIFYING})
PUBLIC_LIST_STATES = frozenset({CertStatus.ANNOUNCED, CertStatus.OBJECTED, CertStatus.RECTIFYING})
# Actions an enterprise's own administrator may take; every other action is the office's.
ENTERPRISE_ACTIONS = frozenset({CertAction.APPLY, CertAction.WITHDRAW})


def allowed_cert_actions(status: CertStatus | str) -> list[str]:
    """The actions the lifecycle accepts from `status`, in a stable order."""
    return [a.value for a in CertAction if (CertStatus(status), a) in CERT_TRANSITIONS]


def next_cert_status(
    status: CertStatus | str, action: CertAction | str, *, now: datetime | None = None,
    objection_deadline: datetime | None = None,
) -> CertStatus:
    """The status after `action`, or InvalidTransition (409) naming the actions that `status` allows.

    An objection is only accepted while the publicity window is open (`now` before `objection_deadline`).
    """
    status, action = CertStatus(status), CertAction(action)
    target = CERT_TRANSITIONS.get((status, action))
    allowed = allowed_cert_actions(status)
    if target is None:
        raise InvalidTransition(
            f"cannot {action.value} a certification that is {status.value}; allowed from {status.value}: "
            f"{', '.join(allowed) or 'nothing (final state)'}",
            current_status=status.value, action=action.value, allowed=allowed,
        )
    if action == CertAction.OBJECT and objection_deadline is not None and now is not None and now > objection_deadline:
        raise InvalidTransition(
            f"the objection window closed at {objection_deadline.isoformat()}",
            current_status=status.value, action=action.value,
            allowed=[a for a in allowed if a != CertAction.OBJECT.value],
        )
    return target


def objection_deadline_from(announced_at: datetime, window_days: int) -> datetime:
    """When the publicity (objection) window of an announcement closes."""
    return announced_at + timedelta(days=window_days)


# --- bases, alliances, mentors ----------------------------------------------------------------------------------

class BaseType(StrEnum):
    """The three base types of the 2021-2025 action plan."""

    EMPLOYMENT = "employment"
    TEACHING = "teaching"
    PRACTICE = "practice"


class BaseCategory(StrEnum):
    """Categories of base named in the seeds."""

    TRAINING_BASE = "training_base"
    PUBLIC_TRAINING_BASE = "public_training_base"
    HIGH_SKILL_TALENT_BASE = "high_skill_talent_base"
    WORLDSKILLS_TRAINING_BASE = "worldskills_training_base"
    DEMONSTRATION_BASE = "demonstration_base"


class AllianceKind(StrEnum):
    """Forms of industry-education grouping."""

    ALLIANCE = "alliance"
    COMMUNITY = "community"
    VOCATIONAL_EDUCATION_GROUP = "vocational_education_group"
    CONSORTIUM = "consortium"


class MemberRole(StrEnum):
    """A member's role in an alliance."""

    LEAD = "lead"
    VICE_LEAD = "vice_lead"
    SECRETARIAT = "secretariat"
    MEMBER = "member"
    OBSERVER = "observer"


class MentorTitle(StrEnum):
    """Titles of people in the faculty pool."""

    INDUSTRY_PROFESSOR = "industry_professor"
    INDUSTRY_MENTOR = "industry_mentor"
    INDUSTRY_LECTURER = "industry_lecturer"
    DUAL_QUALIFIED_TEACHER = "dual_qualified_teacher"


class MentorStatus(StrEnum):
    """A mentor is listed publicly only after consent was recorded."""

    PENDING_CONSENT = "pending_consent"
    LISTED = "listed"
    UNLISTED = "unlisted"


def mask_id_number(value: str | None) -> str | None:
    """An ID number with all but the first 3 and last 2 characters hidden."""
    if not value:
        return value
    return value[:3] + "*" * max(0, len(value) - 5) + value[-2:] if len(value) > 5 else "*" * len(value)


def unique(values: Iterable[str]) -> list[str]:
    """Values without duplicates, first occurrence order kept."""
    return list(dict.fromkeys(values))


# --- who may see what: one rule per resource, shared by its list and its detail ------------------------------------

EVERY_INSTITUTION = "*"


def institution_scope(viewer: Principal | None) -> str | None:
    """Whose restricted records (unconsented mentors, certification files) the viewer may see: EVERY_INSTITUTION for
    the office, one institution's for its administrators (and its integration accounts), else none (members and
    judges of an institution included)."""
    if viewer is None:
        return None
    if viewer.is_office:
        return EVERY_INSTITUTION
    if viewer.institution_id and viewer.acts_for(viewer.institution_id):
        return viewer.institution_id
    return None


def in_scope(viewer: Principal | None, institution_id: str) -> bool:
    """Whether `institution_id`'s restricted records are within the viewer's scope."""
    scope = institution_scope(viewer)
    return scope == EVERY_INSTITUTION or (scope is not None and scope == institution_id)


def mentor_visible(viewer: Principal | None, *, status: str, institution_id: str) -> bool:
    """Listed (consented) mentors are public; pending-consent and unlisted people only for the office and their own
    institution's administrators."""
    return status == MentorStatus.LISTED or in_scope(viewer, institution_id)


OFFICE_ACTOR = "上海市产教融合办公室 (office)"


def entry_by_office(entry: Mapping[str, Any]) -> bool:
    """Whether a history entry was written by office staff (new entries say so; older ones carry the role in the
    actor label, `sub (office_admin)`)."""
    if "by" in entry:
        return entry["by"] == "office"
    return "office_admin" in str(entry.get("actor", ""))


def certification_history_for(viewer: Principal, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A file's history as the viewer may read it: office staff are named only to the office; enterprises see the
    office as the actor."""
    if viewer.is_office:
        return history
    return [{**e, "actor": OFFICE_ACTOR} if entry_by_office(e) else e for e in history]
