"""The polls dashboards make all day, answered before FastAPI's routing and dependency
resolution (measured: 60 % of a 304's cost): a GET of the snapshot or of a city's access
picture, without a query string, that ends in a 304 or in a body already rendered for
its ETag; and ``GET /v1/me``, which clients call to check their token.

The same checks as the endpoints, by the same functions (``deps.authenticate``, or
``deps.authenticate_with_picture_inputs`` where a poll also needs the picture's version inputs,
``versions.*_etag_of``, ``representations.negotiate``); anything else, and anything unusual
(no token, a refused one, an unknown city, an unacceptable format, a cache miss), goes to
the app unchanged, which answers it in full. Sits inside the request-context middleware,
so request ids, security headers, metrics and the access log are the same either way.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from starlette.routing import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from aidaccess.services import Services
from api.conditional import etag_matches
from api.deps import authenticate, authenticate_with_picture_inputs
from api.middleware import Metrics
from api.representations import MEDIA_TYPES, BodyCache, NotAcceptable, negotiate
from api.schemas.auth import me_json
from api.versions import (
    PICTURE_MEDIA_TYPE,
    picture_etag_of,
    picture_headers,
    snapshot_etag_of,
    snapshot_headers,
)
from workflow.errors import DomainError

SNAPSHOT_PATH = "/v1/access-snapshot"
ME_PATH = "/v1/me"
_PICTURE_PATH = re.compile(r"/v1/cities/([0-9a-fA-F-]{32,36})/access")


@dataclass(frozen=True)
class _Template:
    """What the metrics label a request with (scope["route"].path), as the router would."""

    path: str


_SNAPSHOT_ROUTE = _Template(SNAPSHOT_PATH)
_PICTURE_ROUTE = _Template("/v1/cities/{city_id}/access")
_ME_ROUTE = _Template(ME_PATH)
_JSON = (b"content-type", b"application/json")


class CachedReadsMiddleware:
    def __init__(self, app: ASGIApp, *, services: Services, cache: BodyCache, metrics: Metrics) -> None:
        self.app = app
        self.services = services
        self.cache = cache
        self.answered = metrics.cached_reads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["query_string"]:
            await self.app(scope, receive, send)
            return
        path = get_route_path(scope)
        if path == ME_PATH:
            await self._me(scope, receive, send)
            return
        city_id = None
        if path != SNAPSHOT_PATH:
            match = _PICTURE_PATH.fullmatch(path)
            if match is None:
                await self.app(scope, receive, send)
                return
            try:
                city_id = uuid.UUID(match.group(1))
            except ValueError:
                await self.app(scope, receive, send)
                return
        answer = await self._answer(scope, city_id)
        if answer is None:
            await self.app(scope, receive, send)
            return
        status, headers, body = answer
        scope["route"] = _PICTURE_ROUTE if city_id else _SNAPSHOT_ROUTE
        self.answered.labels(str(status)).inc()
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _me(self, scope: Scope, receive: Receive, send: Send) -> None:
        authorization, _, _ = _request_headers(scope)
        try:
            principal = await authenticate(self.services, authorization) if authorization else None
        except Exception:  # noqa: BLE001 - a refused token (401) or the database down (503): the app answers it
            principal = None
        if principal is None:
            await self.app(scope, receive, send)
            return
        body = me_json(principal)
        scope["route"] = _ME_ROUTE
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode()), _JSON]})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope, city_id: uuid.UUID | None) -> tuple[int, list, bytes] | None:
        authorization, if_none_match, accept = _request_headers(scope)
        if not authorization:
            return None
        try:
            if city_id is None:
                chosen = negotiate(None, accept)
                principal, inputs = await authenticate_with_picture_inputs(self.services, authorization)
                etag = snapshot_etag_of(principal, inputs, chosen, None, None, None)
                headers, media_type = snapshot_headers(chosen, etag), MEDIA_TYPES[chosen]
            else:
                principal, inputs = await authenticate_with_picture_inputs(self.services, authorization, city_id)
                if not inputs.city_exists:
                    return None
                etag = picture_etag_of(principal, inputs, city_id, None)
                headers, media_type = picture_headers(etag), PICTURE_MEDIA_TYPE
        except (DomainError, NotAcceptable):
            return None  # the app gives the full problem response
        except Exception:  # noqa: BLE001 - e.g. the database unreachable: the app answers it (503), and logs what it must
            return None
        if etag_matches(if_none_match, etag):
            return 304, _raw(headers), b""
        body = self.cache.get(etag)
        if body is None:
            return None
        raw = _raw({**headers, "Content-Type": media_type})
        raw.append((b"content-length", str(len(body)).encode()))
        return 200, raw, body


def _request_headers(scope: Scope) -> tuple[str | None, str | None, str | None]:
    """Authorization, If-None-Match and Accept, as sent."""
    authorization = if_none_match = accept = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"if-none-match":
            if_none_match = value.decode("latin-1")
        elif name == b"accept":
            accept = value.decode("latin-1")
    return authorization, if_none_match, accept


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
