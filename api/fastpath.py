"""The polls dashboards make all day, answered before FastAPI's routing and dependency
resolution (most of a 304's cost): ``GET /v1/me``, and a GET without query string
of the snapshot or of a city's access picture.

Each is answered by the function its endpoint calls (``api.reads``); only routing is skipped.
Anything that function refuses (no token, a refused one, an unknown city, an unacceptable
format) or fails at goes to the app unchanged, which answers it as a problem. Sits inside the
request-context middleware, so request ids, security headers, metrics and the access log are
the same either way.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from starlette.routing import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from aidaccess.services import Services
from api import reads
from api.middleware import Metrics
from api.representations import BodyCache

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
        authorization, if_none_match, accept = _request_headers(scope)
        path = get_route_path(scope)
        if not authorization:
            answer = None
        elif path == ME_PATH:
            answer, route = await _answered(reads.me(self.services, authorization)), _ME_ROUTE
        elif path == SNAPSHOT_PATH:
            answer, route = (
                await _answered(
                    reads.snapshot(self.services, self.cache, authorization, accept=accept, if_none_match=if_none_match)
                ),
                _SNAPSHOT_ROUTE,
            )
        elif (city_id := _city(path)) is not None:
            answer, route = (
                await _answered(reads.picture(self.services, self.cache, authorization, city_id, None, if_none_match)),
                _PICTURE_ROUTE,
            )
        else:
            answer = None
        if answer is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        if route is not _ME_ROUTE:
            self.answered.labels(str(answer.status)).inc()
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()]
        if answer.status != 304:
            headers.append((b"content-length", str(len(answer.body)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})


async def _answered(pending) -> reads.Answer | None:  # noqa: ANN001
    try:
        return await pending
    except Exception:  # noqa: BLE001 - a refusal (401, 404, 406) or a failure (503): the app answers it, as a problem
        return None


def _city(path: str) -> uuid.UUID | None:
    match = _PICTURE_PATH.fullmatch(path)
    if match is None:
        return None
    try:
        return uuid.UUID(match.group(1))
    except ValueError:
        return None


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
