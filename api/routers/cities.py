"""Cities, their designations, the access picture and the snapshot."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response

from aidaccess.clock import utcnow
from api import reads
from api.deps import BearerToken, CurrentPrincipal, DbSession, ServicesDep, UnitOfWorkRoute
from api.pagination import CursorQuery, LimitQuery, cursor_instant, decode_cursor_as, encode_cursor
from api.problems import problem, problem_responses
from api.representations import (
    BOM_DESCRIPTION,
    NotAcceptable,
    SnapshotFormat,
)
from api.schemas.access import AccessPictureRead, AccessSnapshotRead
from api.schemas.cities import (
    ADM1_PCODE_PATTERN,
    CityCreate,
    CityPage,
    CityRead,
    CityUpdate,
    DesignationCreate,
    DesignationPage,
    DesignationRead,
    DesignationSummary,
)
from api.schemas.common import Instant
from workflow import cities
from workflow.cities import DesignationStatus
from workflow.common import PageRequest

router = APIRouter(tags=["cities"], route_class=UnitOfWorkRoute)

AsOf = Annotated[
    Instant | None,
    Query(description="A moment (RFC 3339 with an offset) to answer for, from history. Default: now."),
]
Adm1Filter = Annotated[str | None, Query(pattern=ADM1_PCODE_PATTERN, description="Governorate P-code, e.g. `SY03`.")]
DesignationFilter = Annotated[
    DesignationStatus | None, Query(description="Only cities with this designation at the moment asked about.")
]


def _city_read(city, designation=None) -> CityRead:  # noqa: ANN001
    read = CityRead.model_validate(city)
    if designation is not None:
        read.current_designation = DesignationSummary.model_validate(designation)
    return read


@router.get(
    "/v1/cities",
    operation_id="listCities",
    summary="List and search cities",
    response_model=CityPage,
    responses=problem_responses(401, 403, 422),
    description="Alphabetical. `q` finds a city by any of its names or aliases, in Latin or Arabic "
    "script, ignoring case, accents and punctuation (`duma` finds Douma; `فوعة` finds Al-Fu'ah) or by P-code.",
)
def list_cities(
    session: DbSession,
    principal: CurrentPrincipal,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    adm1_pcode: Adm1Filter = None,
    designation: DesignationFilter = None,
) -> CityPage:
    after = decode_cursor_as(cursor, str, uuid.UUID)
    items, more = cities.list_cities(
        session=session,
        actor=principal,
        page=PageRequest(limit=limit, after=after),
        q=q,
        adm1_pcode=adm1_pcode,
        designation=designation,
    )
    current = cities.current_designations(session, [c.id for c in items], utcnow())
    return CityPage(
        items=[_city_read(c, current.get(c.id)) for c in items],
        next_cursor=encode_cursor([items[-1].name, str(items[-1].id)]) if more else None,
    )


@router.post(
    "/v1/cities",
    operation_id="createCity",
    summary="Add a city",
    status_code=201,
    response_model=CityRead,
    responses=problem_responses(401, 403, 409, 413, 422),
    description="Coordinators and admins. The community P-code is unique (409 when taken).",
)
def create_city(body: CityCreate, session: DbSession, principal: CurrentPrincipal) -> CityRead:
    return _city_read(cities.create_city(session=session, actor=principal, data=body.model_dump()))


@router.get(
    "/v1/cities/{city_id}",
    operation_id="getCity",
    summary="Get a city",
    response_model=CityRead,
    responses=problem_responses(401, 403, 404, 422),
)
def get_city(city_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal) -> CityRead:
    city = cities.get_city(session=session, actor=principal, city_id=city_id)
    return _city_read(city, cities.current_designations(session, [city.id], utcnow()).get(city.id))


@router.patch(
    "/v1/cities/{city_id}",
    operation_id="updateCity",
    summary="Edit a city",
    response_model=CityRead,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    description="Coordinators and admins. Every change is audited with its before and after.",
)
def update_city(city_id: uuid.UUID, body: CityUpdate, session: DbSession, principal: CurrentPrincipal) -> CityRead:
    city = cities.update_city(
        session=session, actor=principal, city_id=city_id, changes=body.model_dump(exclude_unset=True)
    )
    return _city_read(city, cities.current_designations(session, [city.id], utcnow()).get(city.id))


@router.get(
    "/v1/cities/{city_id}/designations",
    operation_id="listDesignations",
    summary="A city's designation history",
    response_model=DesignationPage,
    responses=problem_responses(401, 403, 404, 422),
    description="Newest effective first, corrected designations included (with `corrected_by_id`).",
)
def list_designations(
    city_id: uuid.UUID,
    session: DbSession,
    principal: CurrentPrincipal,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> DesignationPage:
    after = decode_cursor_as(cursor, cursor_instant, uuid.UUID)
    entries, more = cities.list_designations(
        session=session, actor=principal, city_id=city_id, page=PageRequest(limit=limit, after=after)
    )
    items = []
    for entry in entries:
        read = DesignationRead.model_validate(entry.designation)
        read.corrected_by_id = entry.corrected_by_id
        items.append(read)
    last = entries[-1].designation if entries else None
    return DesignationPage(
        items=items,
        next_cursor=encode_cursor([last.effective_from.isoformat(), str(last.id)]) if more and last else None,
    )


@router.post(
    "/v1/cities/{city_id}/designations",
    operation_id="createDesignation",
    summary="Set a city's access designation",
    status_code=201,
    response_model=DesignationRead,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    description="Coordinators. Designations are appended, never edited: to correct one, post a new one "
    "with `corrects_id`. `besieged_by` is required for `besieged`. `effective_from` may be past or future.",
)
def create_designation(
    city_id: uuid.UUID, body: DesignationCreate, session: DbSession, principal: CurrentPrincipal
) -> DesignationRead:
    designation = cities.record_designation(session=session, actor=principal, city_id=city_id, data=body.model_dump())
    return DesignationRead.model_validate(designation)


@router.get(
    "/v1/cities/{city_id}/access",
    operation_id="getAccessPicture",
    summary="The access picture of a city",
    response_model=AccessPictureRead,
    responses={304: {"description": "Not modified (`If-None-Match`)."}, **problem_responses(401, 403, 404, 422)},
    description="The designation in force and since when, active and upcoming pauses, upcoming approved "
    "convoys (observers: the count only), the last delivery. `as_of` answers for any moment from history. "
    "Carries an `ETag`; send it back in `If-None-Match` for a 304.",
)
async def get_access_picture(
    city_id: uuid.UUID,
    request: Request,
    services: ServicesDep,
    authorization: BearerToken = None,
    as_of: AsOf = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    answer = await reads.picture(
        services, request.app.state.snapshot_cache, authorization, city_id, as_of, if_none_match
    )
    return Response(answer.body, status_code=answer.status, headers=answer.headers)


@router.get(
    "/v1/access-snapshot",
    operation_id="getAccessSnapshot",
    summary="Every city's access picture",
    response_model=AccessSnapshotRead,
    responses={
        200: {
            "description": "JSON, HXL-tagged CSV (a hashtag row under the header) or GeoJSON (a FeatureCollection of points).",
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": "name,name_ar,pcode,...\r\n#loc+name,#loc+name+i_ar,#adm4+code,...\r\nAleppo,حلب,C1007,...\r\n",
                },
                "application/geo+json": {"schema": {"type": "object"}},
            },
        },
        304: {"description": "Not modified (`If-None-Match`)."},
        **problem_responses(401, 403, 406, 422),
    },
    description="The format follows `?format=` (`json`, `hxl`, `geojson`) or the `Accept` header "
    "(`application/json`, `text/csv`, `application/geo+json`). A strong `ETag` comes with every answer: "
    "dashboards that poll with `If-None-Match` get a 304 until something changes.",
)
async def get_access_snapshot(
    request: Request,
    services: ServicesDep,
    authorization: BearerToken = None,
    as_of: AsOf = None,
    adm1_pcode: Adm1Filter = None,
    designation: DesignationFilter = None,
    format: Annotated[SnapshotFormat | None, Query(description="Overrides `Accept`.")] = None,  # noqa: A002
    bom: Annotated[bool, Query(description=BOM_DESCRIPTION + " CSV only.")] = False,
    token: Annotated[
        str | None,
        Query(
            max_length=200,
            description="A feed token (`POST /v1/feed-tokens`), for tools that "
            "fetch a URL and send no header; it reads what an observer reads.",
        ),
    ] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    try:
        answer = await reads.snapshot(
            services,
            request.app.state.snapshot_cache,
            authorization,
            accept=request.headers.get("accept"),
            requested=format,
            as_of=as_of,
            adm1_pcode=adm1_pcode,
            designation=designation,
            if_none_match=if_none_match,
            bom=bom,
            feed_token=token,
        )
    except NotAcceptable as exc:
        return problem(406, exc.detail, instance=request.url.path)
    return Response(answer.body, status_code=answer.status, headers=answer.headers)
