"""The polls, answered by one function each: who may see what, the ETag, the 304, the body.

Their endpoints (``api.routers.cities``, ``api.routers.auth``) and the fast path that answers
them before routing (``api.fastpath``) call the same function; the fast path only skips
FastAPI's routing and dependency resolution. A refusal (401, 404, 406) raises, and the fast path
leaves it to the app, which answers it as a problem.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from aidaccess.clock import utcnow
from aidaccess.services import Services
from api.conditional import etag_matches
from api.deps import authenticate, authenticate_with_picture_inputs, read_on
from api.representations import (
    MEDIA_TYPES,
    UTF8_BOM,
    BodyCache,
    SnapshotFormat,
    negotiate,
    picture_read,
    render_geojson,
    render_hxl,
    render_json,
)
from api.schemas.auth import me_json
from auth.authentication import PictureInputs
from auth.principal import Principal
from workflow import access, feeds
from workflow.cities import DesignationStatus
from workflow.errors import NotFound, Unauthenticated

# Readers may keep a copy, but must revalidate it (a 304 costs almost nothing).
REVALIDATE = {"Cache-Control": "private, no-cache", "Vary": "Accept, Authorization"}
JSON = "application/json"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def me(services: Services, authorization: str | None) -> Answer:
    principal = await authenticate(services, authorization)
    return Answer(200, {"Content-Type": JSON}, me_json(principal))


async def picture(
    services: Services,
    cache: BodyCache,
    authorization: str | None,
    city_id: uuid.UUID,
    as_of: datetime | None,
    if_none_match: str | None,
) -> Answer:
    """A city's access picture. Its strong ETag determines the bytes (workflow.access.picture_version),
    so a body kept under it is exact."""
    principal, inputs = await authenticate_with_picture_inputs(services, authorization, city_id)
    if not inputs.city_exists:
        raise NotFound("No such city.")
    etag = _etag(access.picture_version(actor=principal, inputs=inputs, as_of=as_of, scope=f"city:{city_id}"))
    headers = {"ETag": etag, **REVALIDATE}
    if etag_matches(if_none_match, etag):
        return Answer(304, headers, b"")

    async def render() -> bytes:
        found = await read_on(
            services.database,
            lambda session: access.access_picture(session=session, actor=principal, city_id=city_id, as_of=as_of),
        )
        return picture_read(found).model_dump_json().encode()

    return Answer(200, {**headers, "Content-Type": JSON}, await cache.get_or_render(etag, render))


async def snapshot(
    services: Services,
    cache: BodyCache,
    authorization: str | None,
    *,
    accept: str | None,
    requested: SnapshotFormat | None = None,
    as_of: datetime | None = None,
    adm1_pcode: str | None = None,
    designation: DesignationStatus | None = None,
    if_none_match: str | None = None,
    bom: bool = False,
    feed_token: str | None = None,
) -> Answer:
    """Every city's picture, as JSON, HXL-tagged CSV or GeoJSON. ``bom``: the CSV starts with a UTF-8
    byte order mark, by which Excel reads it as UTF-8 (Arabic intact); other bytes, so another tag."""
    chosen = negotiate(requested, accept)
    bom = bom and chosen == SnapshotFormat.hxl
    if feed_token is not None and not authorization:
        principal, inputs = await _feed_reader(services, feed_token)
    else:
        principal, inputs = await authenticate_with_picture_inputs(services, authorization)
    scope = f"snapshot:{chosen.value}{'+bom' if bom else ''}:{adm1_pcode or '-'}:{designation.value if designation else '-'}"
    etag = _etag(access.picture_version(actor=principal, inputs=inputs, as_of=as_of, scope=scope))
    headers = {"ETag": etag, **REVALIDATE}
    if chosen == SnapshotFormat.hxl:
        headers["Content-Disposition"] = 'inline; filename="access-snapshot.csv"'
    if etag_matches(if_none_match, etag):
        return Answer(304, headers, b"")

    def render_in(session) -> bytes:  # noqa: ANN001
        pictures = access.access_snapshot(
            session=session, actor=principal, as_of=as_of, adm1_pcode=adm1_pcode, designation=designation
        )
        if chosen == SnapshotFormat.hxl:
            return (UTF8_BOM if bom else b"") + render_hxl(pictures)
        if chosen == SnapshotFormat.geojson:
            return render_geojson(pictures)
        return render_json(pictures, as_of)

    body = await cache.get_or_render(etag, lambda: read_on(services.database, render_in))
    return Answer(200, {**headers, "Content-Type": MEDIA_TYPES[chosen]}, body)


async def _feed_reader(services: Services, token: str) -> tuple[Principal, PictureInputs]:
    """The reader a feed token names (workflow.feeds), and the snapshot's version inputs."""
    principal = await read_on(services.database, lambda session: feeds.feed_reader(session, token))
    if principal is None:
        raise Unauthenticated("The feed token is unknown or revoked, or its owner's sign-ins were ended.")
    return principal, await services.hot.picture_inputs(access.PICTURE_ENTITY_TYPES, utcnow())


def _etag(version: str) -> str:
    return f'"{version}"'
