from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

T = TypeVar("T")


def _no_null_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


# An edit's field that every record has (workflow.*.KEPT_ON_EDIT): absent, it is left as it is,
# and the contract offers no null for it. A null sent anyway still validates here, so that the
# workflow's 422 names the field ("trucks cannot be removed.") rather than pydantic's type error.
# Constraints go inside T (Kept[Annotated[int, Field(ge=1)]]): outside, they would meet the null.
Kept = Annotated[T | SkipJsonSchema[None], Field(json_schema_extra=_no_null_default)]


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")


class PageMeta(BaseModel):
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page.", examples=[None]
    )
