"""Feed tokens: the snapshot as a URL for tools that send no header (workflow.feeds)."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from api.deps import CurrentPrincipal, DbSession, UnitOfWorkRoute
from api.problems import problem_responses
from workflow import feeds

router = APIRouter(prefix="/v1/feed-tokens", tags=["feeds"], route_class=UnitOfWorkRoute)


class FeedTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"name": "Power BI access dashboard"}})
    name: str = Field(
        min_length=1, max_length=200, pattern=r"\S", description="What it is for, to tell it from the others."
    )


class FeedTokenRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
                "name": "Power BI access dashboard",
                "created_at": "2016-10-18T09:12:44Z",
                "revoked_at": None,
            }
        },
    )
    id: uuid.UUID
    name: str
    created_at: datetime
    revoked_at: datetime | None = Field(description="When it was revoked; null while it works.")


class FeedUrls(BaseModel):
    json_url: str = Field(description="The snapshot as JSON.")
    hxl: str = Field(description="As HXL-tagged CSV (HXL Proxy, `hxl.data(url)`).")
    hxl_excel: str = Field(
        description="As HXL-tagged CSV with a UTF-8 byte order mark, which Excel opens with Arabic intact."
    )
    geojson: str = Field(description="As GeoJSON (QGIS).")


class FeedTokenCreated(FeedTokenRead):
    token: str = Field(description="Shown this once; it is the `token` of the URLs.")
    urls: FeedUrls = Field(description="The snapshot's URLs with this token, in each format.")


def _urls(request: Request, token: str) -> FeedUrls:
    base = f"{str(request.base_url).rstrip('/')}/v1/access-snapshot?token={token}"
    return FeedUrls(
        json_url=f"{base}&format=json",
        hxl=f"{base}&format=hxl",
        hxl_excel=f"{base}&format=hxl&bom=true",
        geojson=f"{base}&format=geojson",
    )


@router.post(
    "",
    operation_id="createFeedToken",
    summary="A read-only URL of the snapshot",
    status_code=201,
    response_model=FeedTokenCreated,
    responses=problem_responses(401, 403, 413, 422),
    description="For tools that fetch a URL and set no header (HXL Proxy, Power BI, QGIS, Excel): `?token=` on "
    "`GET /v1/access-snapshot` in every format. It reads the snapshot only, and as an observer reads it whoever made it (no "
    "convoy): a URL travels. People only, at most 20 live each. Revoke it with `DELETE /v1/feed-tokens/{id}`; a password "
    "reset or a deactivation of its owner ends it too. Audited.",
)
def create_feed_token(
    request: Request, body: FeedTokenCreate, session: DbSession, principal: CurrentPrincipal
) -> FeedTokenCreated:
    token, secret = feeds.create_feed_token(session=session, actor=principal, name=body.name)
    return FeedTokenCreated(
        **FeedTokenRead.model_validate(token).model_dump(), token=secret, urls=_urls(request, secret)
    )


@router.get(
    "",
    operation_id="listFeedTokens",
    summary="Your feed tokens",
    response_model=list[FeedTokenRead],
    responses=problem_responses(401),
    description="Yours only, live and revoked, newest first; never the token itself.",
)
def list_feed_tokens(session: DbSession, principal: CurrentPrincipal) -> list[FeedTokenRead]:
    return [FeedTokenRead.model_validate(t) for t in feeds.list_feed_tokens(session=session, actor=principal)]


@router.delete(
    "/{token_id}",
    operation_id="revokeFeedToken",
    summary="Revoke a feed token",
    status_code=204,
    responses=problem_responses(401, 404, 422),
    description="It stops working at once. Audited.",
)
def revoke_feed_token(token_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal) -> Response:
    feeds.revoke_feed_token(session=session, actor=principal, token_id=token_id)
    return Response(status_code=204)
