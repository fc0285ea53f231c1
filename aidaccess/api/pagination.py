"""Opaque cursors for keyset pagination."""

from __future__ import annotations

import base64
import uuid
from typing import Annotated, Any

import orjson
from fastapi import Query

from aidaccess.workflow.common import PageRequest
from aidaccess.workflow.errors import InvalidInput

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page (1-{MAX_LIMIT}).")]
CursorQuery = Annotated[
    str | None, Query(max_length=512, description="The `next_cursor` of the previous page.")
]


def encode_cursor(last_key: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"after": str(last_key)})).decode().rstrip("=")


def _decode(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = orjson.loads(raw)["after"]
        if not isinstance(value, str):
            raise ValueError
        return value
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise InvalidInput.field("query.cursor", "This is not a cursor this list gave out.", "invalid_cursor") from None


def uuid_page(limit: int, cursor: str | None) -> PageRequest:
    if cursor is None:
        return PageRequest(limit=limit)
    try:
        return PageRequest(limit=limit, after=uuid.UUID(_decode(cursor)))
    except ValueError:
        raise InvalidInput.field("query.cursor", "This is not a cursor this list gave out.", "invalid_cursor") from None


def int_page(limit: int, cursor: str | None) -> PageRequest:
    if cursor is None:
        return PageRequest(limit=limit)
    value = _decode(cursor)
    if not value.isdigit():
        raise InvalidInput.field("query.cursor", "This is not a cursor this list gave out.", "invalid_cursor")
    return PageRequest(limit=limit, after=int(value))


def next_cursor(items: list[Any], has_more: bool, key: str = "id") -> str | None:
    return encode_cursor(getattr(items[-1], key)) if has_more and items else None
