"""Value types for request parameters whose range Python or the database would otherwise discover as a 500."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator


def utc_instant(value: datetime) -> datetime:
    """The instant in UTC (a time without a zone is read as UTC); ValueError (so 422) when it has no UTC form, such
    as 0001-01-01T00:00:00+01:00 or 9999-12-31T23:59:59-01:00."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once converted to UTC (0001-01-01 to 9999-12-31)") from None


UtcInstant = Annotated[datetime, AfterValidator(utc_instant)]
