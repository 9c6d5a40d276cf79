"""Pure rules of the registry: identifiers (USCC, school codes), vocabularies. No I/O."""

from __future__ import annotations

import re
from enum import StrEnum

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC_SHAPE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")
_SCHOOL_CODE = re.compile(r"^\d{10}$")


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


class InstitutionStatus(StrEnum):
    """Whether an institution takes part; `withdrawn` records may name a successor (after a merge)."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    WITHDRAWN = "withdrawn"


def uscc_check_char(first17: str) -> str:
    """The GB 32100-2015 check character for the first 17 characters of a USCC."""
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def uscc_problem(code: str) -> str | None:
    """Why `code` is not a valid unified social credit code, or None when it is."""
    if len(code) != 18:
        return f"a USCC has 18 characters, got {len(code)}"
    if not _USCC_SHAPE.match(code):
        return "a USCC uses digits and the letters 0-9A-Y except I, O, S, V, Z; positions 3-8 are digits"
    expected = uscc_check_char(code[:17])
    if code[17] != expected:
        return f"check character is {code[17]!r} but GB 32100-2015 gives {expected!r}"
    return None


def school_code_problem(code: str) -> str | None:
    """Why `code` is not a 10-digit school identification code, or None when it is."""
    if not _SCHOOL_CODE.match(code):
        return "a school identification code has exactly 10 digits (AABBCCCCCC)"
    return None
