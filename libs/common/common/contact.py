"""Email addresses and phone numbers as people type them: one validator for every place they enter the platform.

Pure functions (no DNS, no I/O): an address refused here can never be delivered to, whatever the mail relay says;
one accepted here may still bounce. Used by the request schemas (registry contacts, mentors, notify profiles) and by
notify before a send, so an address that can never work fails at once with the reason.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

MAX_EMAIL = 254  # RFC 5321: a path is at most 256 octets including the angle brackets
MAX_LOCAL = 64
_ATEXT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_PHONE_SEPARATORS = re.compile(r"[\s\-().]")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_CN_MOBILE = re.compile(r"^(?:\+86)?1[3-9]\d{9}$")
_CN_LANDLINE = re.compile(r"^0[1-9]\d{8,10}$")  # area code (010, 021, 0571, ...) and a 7-8 digit number


def email_problem(value: str) -> str | None:
    """Why `value` can never be an email address (None when it can be): no spaces, line breaks or controls, one
    `@`, a dot-atom local part of at most 64 characters, a domain of DNS labels with a top-level name."""
    if not value:
        return "the address is empty"
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value):
        return "the address contains a space, a line break or a control character"
    if len(value) > MAX_EMAIL:
        return f"the address is longer than {MAX_EMAIL} characters"
    if value.count("@") != 1:
        return "an address has exactly one @"
    local, domain = value.split("@")
    if not local or len(local) > MAX_LOCAL or not _ATEXT.match(local):
        return (f"the part before @ must be 1-{MAX_LOCAL} letters, digits or !#$%&'*+/=?^_`{{|}}~- separated by "
                "single dots")
    try:
        ascii_domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        return f"the domain {domain!r} is not a valid internationalised domain name"
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or len(ascii_domain) > 253:
        return f"the domain {domain!r} is not a host name (labels of letters, digits and hyphens, with a dot)"
    if labels[-1].isdigit():
        return f"the domain {domain!r} has no top-level name"
    return None


def normalize_email(value: str) -> str:
    """The address, trimmed, with its domain in lower case; ValueError naming the defect when it can never work."""
    value = value.strip()
    problem = email_problem(value)
    if problem:
        raise ValueError(f"not a usable email address: {problem}")
    local, domain = value.split("@")
    return f"{local}@{domain.lower()}"


def _compact_phone(value: str) -> str:
    text = unicodedata.normalize("NFKC", value).strip()
    return _PHONE_SEPARATORS.sub("", text)


def phone_problem(value: str) -> str | None:
    """Why `value` can never be a phone number (None when it can be): a mainland mobile number, an area code and
    number, or +<country code><number> (E.164); spaces, hyphens, dots and brackets are ignored."""
    compact = _compact_phone(value)
    if not compact:
        return "the number is empty"
    if compact.startswith("+"):
        return None if _E164.match(compact) else "an international number is + and 7-15 digits"
    if _CN_MOBILE.match(compact) or _CN_LANDLINE.match(compact):
        return None
    return "expected a mobile number (13800001234), an area code and number (021-12345678) or +<country><number>"


def normalize_phone(value: str) -> str:
    """The number without separators (full-width digits made ASCII); ValueError naming the defect."""
    problem = phone_problem(value)
    if problem:
        raise ValueError(f"not a usable phone number: {problem}")
    return _compact_phone(value)


def mobile_problem(value: str) -> str | None:
    """Why `value` cannot receive an SMS (None when it can): it must be a phone number, and not a landline."""
    problem = phone_problem(value)
    if problem:
        return problem
    compact = _compact_phone(value)
    if compact.startswith("0") or compact.startswith("+860"):
        return "a landline number cannot receive SMS"
    return None


def _strip(value):
    return value.strip() if isinstance(value, str) else value


EmailAddress = Annotated[str, BeforeValidator(_strip), AfterValidator(normalize_email)]
PhoneNumber = Annotated[str, BeforeValidator(_strip), AfterValidator(normalize_phone)]
