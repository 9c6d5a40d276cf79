"""Helpers shared by the registry's integration tests: valid identifiers and record builders."""

from __future__ import annotations

import itertools
import random

from registry.domain import complete_uscc

_counter = itertools.count(1)
_rand = random.Random()


def new_uscc(prefix: str = "913100") -> str:
    """A fresh, valid Shanghai enterprise USCC."""
    body = f"{prefix}00{_rand.randrange(10**8, 10**9)}"
    return complete_uscc(body[:17])


def new_school_code() -> str:
    """A fresh 10-digit school code."""
    return f"4131{_rand.randrange(10**5, 10**6)}"


def enterprise(name: str, **extra) -> dict:
    """The body of a new enterprise."""
    return {"kind": "enterprise", "name_zh": name, "uscc": new_uscc(), "district": "lingang", **extra}


def school(name: str, **extra) -> dict:
    """The body of a new university."""
    return {"kind": "university", "name_zh": name, "school_code": new_school_code(), "district": "pudong", **extra}
