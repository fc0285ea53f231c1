from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")


class PageMeta(BaseModel):
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page.", examples=[None]
    )
