"""RFC 9457 problem responses: one stable ``type`` per kind of error, never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from aidaccess.context import current_request_id
from workflow.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    Throttled,
    Unauthenticated,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:aidaccess:problem:"
logger = logging.getLogger("aidaccess.errors")

# slug -> title; the slug is the stable part clients match on.
PROBLEM_TITLES: dict[str, str] = {
    "bad-request": "Bad request",
    "unauthenticated": "Authentication required",
    "forbidden": "Not allowed",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "not-acceptable": "Not acceptable",
    "conflict": "Conflict",
    "invalid-state": "Not allowed in the current state",
    "precondition-failed": "Precondition failed",
    "precondition-required": "Precondition required",
    "content-too-large": "Request body too large",
    "unsupported-media-type": "Unsupported media type",
    "validation-error": "Invalid input",
    "too-many-requests": "Too many requests",
    "internal-error": "Internal error",
    "service-unavailable": "Service unavailable",
}

_STATUS_SLUGS = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    412: "precondition-failed",
    413: "content-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    428: "precondition-required",
    429: "too-many-requests",
    500: "internal-error",
    503: "service-unavailable",
}


class FieldProblem(BaseModel):
    field: str = Field(description="Where: `body.email`, `query.limit`, `header.if-match`.")
    message: str
    code: str = Field(description="A stable machine-readable reason, e.g. `missing`, `invalid`.")


class Problem(BaseModel):
    """An RFC 9457 problem detail."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "type": "urn:aidaccess:problem:validation-error",
                "title": "Invalid input",
                "status": 422,
                "detail": "body.email: value is not a valid email address",
                "instance": "/v1/users",
                "request_id": "0f6c7d0e9b7a4c1f",
                "errors": [
                    {"field": "body.email", "message": "value is not a valid email address", "code": "value_error"}
                ],
            }
        },
    )

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldProblem] | None = None
    state: str | None = Field(default=None, description="On 409: the resource's current state.")
    allowed_actions: list[str] | None = Field(default=None, description="On 409: what may be done now.")


class ProblemResponse(Response):
    media_type = PROBLEM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def problem(
    status: int,
    detail: str | None = None,
    *,
    slug: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    slug = slug or _STATUS_SLUGS.get(status, "bad-request")
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + slug,
        "title": PROBLEM_TITLES.get(slug, "Error"),
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    request_id = current_request_id()
    if request_id:
        body["request_id"] = request_id
    body.update({k: v for k, v in extra.items() if v is not None})
    return ProblemResponse(body, status_code=status, headers=headers)


def unauthenticated(detail: str, *, instance: str | None = None, error: str = "invalid_token") -> ProblemResponse:
    """401 with the challenge RFC 6750 asks for; ``error`` is the OAuth 2.0 error code."""
    return problem(
        401,
        detail,
        instance=instance,
        headers={"WWW-Authenticate": f'Bearer realm="aidaccess", error="{error}"'},
        error=error,
    )


def _location(loc: tuple | list) -> str:
    parts = [str(p) for p in loc]
    return ".".join(parts) if parts else "body"


def _validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    errors = []
    for error in exc.errors():
        code = error.get("type", "invalid")
        if code == "json_invalid":
            # The location's second part is a character offset, not a field.
            errors.append({"field": "body", "message": "The body is not valid JSON.", "code": code})
            continue
        errors.append({"field": _location(error.get("loc", ())), "message": error.get("msg", "invalid"), "code": code})
    return errors


def install_problem_handlers(app: FastAPI) -> None:
    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        errors = _validation_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem(422, detail, instance=request.url.path, errors=errors)

    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        status = exc.status_code
        detail = exc.detail if isinstance(exc.detail, str) else None
        if status == 404 and detail == "Not Found":
            detail = f"There is no {request.url.path} here."
        if status == 405:
            detail = f"{request.method} is not allowed on {request.url.path}."
        if status == 413:
            detail = "The request body is larger than this service accepts."
        headers = dict(exc.headers or {})
        if status == 401:
            headers.setdefault("WWW-Authenticate", 'Bearer realm="aidaccess"')
        return problem(status, detail, instance=request.url.path, headers=headers or None)

    async def on_not_found(request: Request, exc: NotFound) -> Response:
        return problem(404, exc.detail, instance=request.url.path)

    async def on_forbidden(request: Request, exc: Forbidden) -> Response:
        return problem(403, exc.detail, instance=request.url.path)

    async def on_unauthenticated(request: Request, exc: Unauthenticated) -> Response:
        return unauthenticated(exc.detail, instance=request.url.path)

    async def on_invalid(request: Request, exc: InvalidInput) -> Response:
        errors = [{"field": e.field, "message": e.message, "code": e.code} for e in exc.errors]
        return problem(422, exc.detail, instance=request.url.path, errors=errors)

    async def on_conflict(request: Request, exc: Conflict) -> Response:
        slug = "invalid-state" if exc.state is not None else "conflict"
        return problem(
            409,
            exc.detail,
            slug=slug,
            instance=request.url.path,
            state=exc.state,
            allowed_actions=exc.allowed_actions,
            **exc.extra,
        )

    async def on_precondition(request: Request, exc: PreconditionFailed) -> Response:
        return problem(412, exc.detail, instance=request.url.path)

    async def on_precondition_required(request: Request, exc: PreconditionRequired) -> Response:
        return problem(428, exc.detail, instance=request.url.path, header=exc.header)

    async def on_throttled(request: Request, exc: Throttled) -> Response:
        return problem(
            429, exc.detail, instance=request.url.path, headers={"Retry-After": str(exc.retry_after)}, **exc.extra
        )

    async def on_integrity(request: Request, exc: IntegrityError) -> Response:
        # A unique constraint lost a race with a concurrent write: nothing was written.
        logger.info("integrity error: %s", type(exc.orig).__name__)
        return problem(409, "This conflicts with data written at the same time; retry.", instance=request.url.path)

    async def on_stale(request: Request, exc: StaleDataError) -> Response:
        # Another writer changed the same version first: exactly one of them succeeded.
        return problem(409, "Someone changed this at the same moment; read it again.", instance=request.url.path)

    async def on_operational(request: Request, exc: OperationalError) -> Response:
        # The driver's first line ("database is locked", "connection refused"): a name and a reason, no values.
        logger.error("database unavailable: %s: %s", type(exc.orig).__name__, str(exc.orig).partition("\n")[0][:200])
        return problem(
            503, "The database is unavailable; retry shortly.", instance=request.url.path, headers={"Retry-After": "1"}
        )

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(NotFound, on_not_found)
    app.add_exception_handler(Forbidden, on_forbidden)
    app.add_exception_handler(Unauthenticated, on_unauthenticated)
    app.add_exception_handler(InvalidInput, on_invalid)
    app.add_exception_handler(Conflict, on_conflict)
    app.add_exception_handler(PreconditionFailed, on_precondition)
    app.add_exception_handler(PreconditionRequired, on_precondition_required)
    app.add_exception_handler(Throttled, on_throttled)
    app.add_exception_handler(IntegrityError, on_integrity)
    app.add_exception_handler(StaleDataError, on_stale)
    app.add_exception_handler(OperationalError, on_operational)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of the problem responses an operation may give."""
    descriptions = {
        400: "Malformed request.",
        401: "Missing, invalid, expired or revoked credentials.",
        403: "The caller's role or scopes may not do this.",
        404: "No such resource, or the caller may not see it.",
        409: "The current state forbids this.",
        412: "The `If-Match` version is stale.",
        413: "The request body is too large.",
        422: "Invalid input; `errors` names each field.",
        429: "Throttled; see `Retry-After`.",
    }
    return {
        s: {"model": Problem, "description": descriptions.get(s, "Error."), "content": {PROBLEM_MEDIA_TYPE: {}}}
        for s in statuses
    }
