"""Cursor paging for list endpoints: an opaque cursor over the sort key and the id of the last item (keyset), never
an offset, so pages stay stable while rows are added."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import Query

from common.errors import Unprocessable

Cursor = Annotated[str | None, Query(max_length=1000, description="`next_cursor` of the previous page")]


def encode_cursor(*values: Any) -> str:
    """An opaque cursor carrying the keyset values of the last item of a page (datetimes as ISO 8601)."""
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(orjson.dumps(plain)).decode()


def decode_cursor(cursor: str, *kinds: type) -> list[Any]:
    """The keyset values of a cursor this API issued, as `kinds` (str, int or datetime); 422 for anything else."""
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError("wrong shape")
        out = []
        for value, kind in zip(values, kinds, strict=True):
            if kind is datetime:
                value = datetime.fromisoformat(value)
            elif not isinstance(value, kind):
                raise ValueError("wrong type")
            out.append(value)
        return out
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise Unprocessable("the cursor is not one this API handed out") from exc
