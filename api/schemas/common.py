from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

T = TypeVar("T")


def _no_null_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


# An edit's field that every record has (workflow.*.KEPT_ON_EDIT): absent, it is left as it is,
# and the contract offers no null for it. A null sent anyway still validates here, so that the
# workflow's 422 names the field ("trucks cannot be removed.") rather than pydantic's type error.
# Constraints go inside T (Kept[Annotated[int, Field(ge=1)]]): outside, they would meet the null.
Kept = Annotated[T | SkipJsonSchema[None], Field(json_schema_extra=_no_null_default)]


# RFC 3339's date-time (section 5.6), an offset required; its note allows a space for the T.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
FIRST_YEAR, LAST_YEAR = 1900, 2199


def _rfc3339_text(value: Any) -> Any:
    """Times come as RFC 3339 text: pydantic alone would take ``-1`` or ``"1700000000"`` as
    seconds since 1970."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("Give a time as RFC 3339 text with an offset, e.g. 2016-09-12T19:00:00+03:00.")
    return value


def within_the_years(value: datetime) -> datetime:
    """In UTC, as it is stored and compared: an instant near year 1 or 9999 may not convert."""
    try:
        year = value.astimezone(UTC).year
    except OverflowError:
        year = value.year
    if not FIRST_YEAR <= year <= LAST_YEAR or not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(f"Give a time between the years {FIRST_YEAR} and {LAST_YEAR}.")
    return value


# Every time the API takes, in a body or a query.
Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(within_the_years)]


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")


class PageMeta(BaseModel):
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page.", examples=[None]
    )
