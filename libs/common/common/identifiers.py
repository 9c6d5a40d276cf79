"""Identifiers typed by people (USCCs, school codes) in one canonical form before validation and uniqueness."""

from __future__ import annotations

import unicodedata


def canonical_code(value: str) -> str:
    """NFKC (full-width letters and digits become ASCII, e.g. `９１３１` -> `9131`), surrounding spaces removed and
    letters upper-cased: the form codes are validated, stored and compared in."""
    return unicodedata.normalize("NFKC", value).strip().upper()


def foreign_digits(code: str) -> str | None:
    """A message naming the first digit outside 0-9 (Arabic-Indic and other scripts, which NFKC keeps), or None."""
    for ch in code:
        if ch.isdigit() and not ("0" <= ch <= "9"):
            return (f"{unicodedata.name(ch, 'a non-ASCII digit').lower()} ({ch!r}) is not one of the digits 0-9: "
                    "write the code with 0-9")
    return None
