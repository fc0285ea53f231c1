"""Opaque cursors for keyset pagination."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi import Query

from api.schemas.common import within_the_years
from workflow.common import PageRequest
from workflow.errors import InvalidInput

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page (1-{MAX_LIMIT}).")]
CursorQuery = Annotated[str | None, Query(max_length=512, description="The `next_cursor` of the previous page.")]


def encode_cursor(last_key: Any) -> str:
    value = [str(k) for k in last_key] if isinstance(last_key, (list, tuple)) else str(last_key)
    return base64.urlsafe_b64encode(orjson.dumps({"after": value})).decode().rstrip("=")


def cursor_instant(value: str) -> datetime:
    """A time in a cursor: aware and within the years the API takes (a forged one is a 422, as
    every other bad cursor, not a 500 when the database is asked)."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(value)
    return within_the_years(moment)


def _invalid_cursor() -> InvalidInput:
    return InvalidInput.field("query.cursor", "This is not a cursor this list gave out.", "invalid_cursor")


def decode_cursor_as(cursor: str | None, *parsers: Callable[[str], Any]) -> tuple | None:
    """A composite cursor (the sort key of the last item), each part parsed."""
    if cursor is None:
        return None
    parts = decode_cursor(cursor, len(parsers))
    try:
        return tuple(parse(part) for parse, part in zip(parsers, parts, strict=True))
    except ValueError:
        raise _invalid_cursor() from None


def decode_cursor(cursor: str, parts: int) -> list[str]:
    """A composite cursor: the sort key of the last item, in parts."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = orjson.loads(raw)["after"]
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        value = None
    if not isinstance(value, list) or len(value) != parts or not all(isinstance(v, str) for v in value):
        raise _invalid_cursor()
    return value


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


# ---- Link: rel="next" (RFC 8288) ------------------------------------------------------

# A page's cursor as the body carries it: a JSON key, so never inside a string value (whose quotes
# are escaped). Pages put it first (PageMeta) or last (the feed): the ends of a body are searched.
_NEXT_CURSOR = re.compile(rb'"next_cursor":"([A-Za-z0-9_\-=.]{1,512})"')
_SEARCHED = 1024
# The lists (every other path is passed through untouched: /v1/me and the polls are the hot paths).
_LISTS = re.compile(
    r"/v1/(access-requests|cities|cities/[^/]+/designations|organizations|users|service-accounts|audit|pauses|"
    r"violations|events|webhooks)"
)
# The feed continues with `after=`; every other list with `cursor=`.
_CURSOR_PARAMETER = {"/v1/events": "after"}


def is_list(method: str, path: str) -> bool:
    """Whether a request reads a page of a list, whose answer may carry ``Link: <...>; rel="next"``."""
    return method == "GET" and _LISTS.fullmatch(path) is not None


def next_link(path: str, query_string: bytes, body: bytes, root_path: str = "") -> bytes | None:
    """The ``Link`` header of a page whose body names a next cursor: the same request with it."""
    match = _NEXT_CURSOR.search(body[:_SEARCHED]) or _NEXT_CURSOR.search(body[-_SEARCHED:])
    if match is None:
        return None
    parameter = _CURSOR_PARAMETER.get(path, "cursor")
    kept = [(k, v) for k, v in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True) if k != parameter]
    query = urlencode([*kept, (parameter, match.group(1).decode())])
    return f'<{root_path}{path}?{query}>; rel="next"'.encode("latin-1")
