"""The ETags and headers of the access picture and the snapshot, computed the same way by
their endpoints and by the fast path that answers polls without FastAPI (api.fastpath)."""

from __future__ import annotations

import uuid
from datetime import datetime

from aidaccess.clock import utcnow
from aidaccess.services import Services
from api.representations import SnapshotFormat
from auth.principal import Principal
from db.hot import PictureInputs
from workflow import access
from workflow.cities import DesignationStatus

# Readers may keep a copy, but must revalidate it (a 304 costs almost nothing).
REVALIDATE = {"Cache-Control": "private, no-cache", "Vary": "Accept, Authorization"}


def _etag(version: str) -> str:
    return f'"{version}"'


async def picture_etag(services: Services, principal: Principal, city_id: uuid.UUID, as_of: datetime | None) -> tuple[str, bool]:
    """The picture's strong ETag, and whether the city exists."""
    inputs = await services.hot.picture_inputs(access.PICTURE_ENTITY_TYPES, utcnow(), city_id)
    return picture_etag_of(principal, inputs, city_id, as_of), inputs.city_exists


def picture_etag_of(principal: Principal, inputs: PictureInputs, city_id: uuid.UUID, as_of: datetime | None) -> str:
    return _etag(access.picture_version(actor=principal, inputs=inputs, as_of=as_of, scope=f"city:{city_id}"))


async def snapshot_etag(
    services: Services,
    principal: Principal,
    chosen: SnapshotFormat,
    as_of: datetime | None,
    adm1_pcode: str | None,
    designation: DesignationStatus | None,
) -> str:
    inputs = await services.hot.picture_inputs(access.PICTURE_ENTITY_TYPES, utcnow())
    return snapshot_etag_of(principal, inputs, chosen, as_of, adm1_pcode, designation)


def snapshot_etag_of(
    principal: Principal,
    inputs: PictureInputs,
    chosen: SnapshotFormat,
    as_of: datetime | None,
    adm1_pcode: str | None,
    designation: DesignationStatus | None,
) -> str:
    scope = f"snapshot:{chosen.value}:{adm1_pcode or '-'}:{designation.value if designation else '-'}"
    return _etag(access.picture_version(actor=principal, inputs=inputs, as_of=as_of, scope=scope))


def picture_headers(etag: str) -> dict[str, str]:
    return {"ETag": etag, **REVALIDATE}


def snapshot_headers(chosen: SnapshotFormat, etag: str) -> dict[str, str]:
    headers = {"ETag": etag, **REVALIDATE}
    if chosen == SnapshotFormat.hxl:
        headers["Content-Disposition"] = 'inline; filename="access-snapshot.csv"'
    return headers


PICTURE_MEDIA_TYPE = "application/json"
