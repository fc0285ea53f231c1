"""The application factory."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from aidaccess import __version__
from aidaccess.services import Services, build_services
from aidaccess.settings import Settings, get_settings
from api.admission import Admission, AdmissionMiddleware
from api.console.pages import install_console
from api.docs_text import API_DESCRIPTION, TAGS, describe
from api.fastpath import CachedReadsMiddleware
from api.links import add_etags_and_links
from api.middleware import Metrics, RequestContextMiddleware
from api.problems import PROBLEM_MEDIA_TYPE, Problem, install_problem_handlers, problem_responses
from api.ratelimit import WriteRateLimiter
from api.representations import BodyCache
from api.routers import access_requests, admin, audit, auth, cities, events, feeds, ops, pauses, violations, webhooks
from api.routers.docs import install_docs
from api.sign_ins import SignInPlaces
from auth.passwords import check_executor

# Never queued for admission: sign-in waits on its own password-check threads, and the probes
# and metrics must answer however loaded the process is (api.admission).
UNGATED_PATHS = ("/v1/auth/token", "/sign-in", "/healthz", "/readyz", "/metrics")

# The collector's first threshold above what a request has alive at once (a page of 200 holds
# ~10,000 objects, all freed by reference counting): at Python's 700, requests set off collections
# mid-request that stopped every request in flight (docs/performance.md, "Garbage collection").
GC_THRESHOLDS = (25_000, 10, 10)
# Requests whose encoded representation a worker keeps for lists: 200 pages of 50. Each takes ~1.3 kB
# of JSON (the demo's requests) and ~0.5 kB of objects around it: ~18 MB at most.
LISTED_REQUESTS_KEPT = 10_000


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    settings = settings or (services.settings if services else get_settings())
    settings.check_production_ready()
    services = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Objects alive after start-up never need collecting: freezing them cuts GC pauses.
        gc.collect()
        gc.freeze()
        thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            yield
        finally:
            gc.set_threshold(*thresholds)
            app.state.password_checks.shutdown(wait=False, cancel_futures=True)
            await services.hot.close()
            services.database.dispose()

    app = FastAPI(
        title="aidaccess",
        version=__version__,
        description=API_DESCRIPTION,
        openapi_tags=TAGS,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        root_path=settings.root_path,
        separate_input_output_schemas=False,
        # Metrics are Prometheus (/metrics) and logs JSON lines; FastAPI's native OpenTelemetry
        # would only cost its provider checks on every request.
        telemetry={
            "tracing": False,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
        },
    )
    app.state.services = services
    checks = settings.password_checks or os.cpu_count() or 1
    app.state.password_checks = check_executor(checks)
    app.state.sign_ins = SignInPlaces(settings.sign_in_places or 8 * checks, settings.sign_in_places_per_address)
    app.state.metrics = Metrics()
    app.state.metrics.watch_writes(services.database)
    install_problem_handlers(app)
    # Snapshots and access pictures, by ETag: cities x viewer classes x formats.
    app.state.snapshot_cache = BodyCache(size=1024)
    # Lists' requests, encoded, by version (routers.access_requests._page_json).
    app.state.listed_requests = BodyCache(size=LISTED_REQUESTS_KEPT)
    app.state.write_limiter = (
        WriteRateLimiter(per_minute=settings.write_rate_per_minute, burst=settings.write_burst)
        if settings.write_rate_per_minute
        else None
    )
    # Matched hottest first: each request walks the routes until one matches. The contract lists paths by TAGS.
    for router in (
        access_requests.router,
        cities.router,
        auth.router,
        admin.organizations,
        admin.users,
        admin.service_accounts,
        pauses.router,
        violations.router,
        events.router,
        webhooks.router,
        feeds.router,
        audit.router,
        ops.router,
    ):
        app.include_router(router)
    install_docs(app)
    install_console(app)
    app.add_middleware(
        CachedReadsMiddleware, services=services, cache=app.state.snapshot_cache, metrics=app.state.metrics
    )
    if settings.cors_origin_list:
        # Inside the request-context middleware, so preflight answers carry the security headers too.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "If-Match",
                "If-None-Match",
                "Idempotency-Key",
                "X-Request-Id",
            ],
            expose_headers=["ETag", "Location", "Retry-After", "X-Request-Id"],
            allow_credentials=False,  # bearer tokens, never cookies
            max_age=600,
        )
    # Inside the request-context middleware, so a request's time in the queue is in its latency
    # (access log, metrics), and a 503 from the queue carries the request id and security headers.
    app.state.admission = Admission(
        limit=settings.resolved_concurrent_requests, max_wait=settings.request_queue_seconds
    )
    app.state.metrics.watch_admission(app.state.admission)
    app.add_middleware(AdmissionMiddleware, admission=app.state.admission, ungated=UNGATED_PATHS)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=app.state.metrics,
        max_body_bytes=settings.max_body_bytes,
        hsts=settings.is_production,
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
        separate_input_output_schemas=False,
    )
    # Paths in the documentation's order (TAGS), not the routers' matching order; stable within a tag.
    tag_order = {tag["name"]: index for index, tag in enumerate(app.openapi_tags or [])}
    schema["paths"] = dict(
        sorted(
            schema.get("paths", {}).items(),
            key=lambda item: min(
                (
                    tag_order.get(tag, len(tag_order))
                    for operation in item[1].values()
                    for tag in operation.get("tags", [])
                ),
                default=len(tag_order),
            ),
        )
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in components["Problem"].pop("$defs", {}).items():
        components[name] = definition
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    problem_content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    throttled = problem_responses(429)[429]["description"]
    malformed = problem_responses(400)[400]["description"]
    for path, path_item in schema.get("paths", {}).items():
        for method, operation in path_item.items():
            # Any request may find the process too busy (api.admission) or the database unreachable.
            if path not in _NEVER_BUSY:
                operation.setdefault("responses", {}).setdefault("503", {"description": _BUSY})
            # Any body can arrive undecodable (not UTF-8, not JSON, a broken form): 400.
            if "requestBody" in operation:
                operation.setdefault("responses", {}).setdefault("400", {"description": malformed})
                if "application/json" in operation["requestBody"].get("content", {}):
                    operation["responses"].setdefault("415", {"description": _NOT_JSON})
            # An edit names the version it changes (api.conditional.required_version): If-Match is required.
            if method == "patch" and any(p["name"] == "if-match" for p in operation.get("parameters", [])):
                for parameter in operation["parameters"]:
                    if parameter["name"] == "if-match":
                        parameter["required"] = True
                        parameter["schema"] = {"type": "string"}
                operation.setdefault("responses", {}).setdefault("428", {"description": _IF_MATCH_REQUIRED})
            # Every authenticated write counts against its principal's rate limit, and says what is left.
            if method in {"post", "put", "patch", "delete"} and operation.get("security"):
                operation.setdefault("responses", {}).setdefault("429", {"description": throttled})
                for status, response in operation["responses"].items():
                    if status.startswith("2") or status == "429":
                        response.setdefault("headers", {}).update(_RATE_LIMIT_HEADERS)
                operation["responses"]["429"]["headers"]["Retry-After"] = _RETRY_AFTER
            for status, response in operation.get("responses", {}).items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = problem_content
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            example = _BODY_EXAMPLES.get(operation.get("operationId"))
            if example is not None:
                for content in operation["requestBody"]["content"].values():
                    content["example"] = example
    # Besides the OAuth2 flows, a plain bearer scheme: what clients that already hold a token need.
    schema["components"].setdefault("securitySchemes", {})["BearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from POST /v1/auth/token.",
    }
    schema["components"]["securitySchemes"]["FeedToken"] = {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "A feed token (`POST /v1/feed-tokens`): the snapshot only, read as an observer reads it.",
    }
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if {"OAuth2": []} in operation.get("security", []):
                operation["security"].append({"BearerAuth": []})
                if operation.get("operationId") == "getAccessSnapshot":
                    operation["security"].append({"FeedToken": []})
    add_etags_and_links(schema)
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            body = (
                operation.get("responses", {})
                .get("200", {})
                .get("content", {})
                .get("application/json", {})
                .get("schema", {})
            )
            if method == "get" and body.get("$ref", "").endswith("Page"):
                operation["responses"]["200"].setdefault("headers", {})["Link"] = _NEXT_LINK
    describe(schema)
    schema["webhooks"] = _WEBHOOKS
    app.openapi_schema = schema
    return schema


_RATE_LIMIT_HEADERS = {
    "RateLimit-Policy": {
        "description": 'The write rate (IETF HTTPAPI RateLimit draft): `"writes";q=BURST;w=SECONDS`, a burst '
        "of writes that refills steadily over the window. Absent when the service sets no limit.",
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": '`"writes";r=LEFT;t=SECONDS`: writes left now, and seconds until the whole burst is back.',
        "schema": {"type": "string"},
    },
}
_RETRY_AFTER = {"description": "Seconds until a write is allowed again.", "schema": {"type": "integer"}}
_NEXT_LINK = {
    "description": 'RFC 8288: `<this request with the next cursor>; rel="next"` when there is a next page '
    "(`next_cursor` in the body is the same).",
    "schema": {"type": "string"},
}
_IF_MATCH_REQUIRED = "No `If-Match`: an edit must name the version it changes (the `ETag` you read); nothing was done."
_NOT_JSON = "The body was not sent as JSON (`Content-Type: application/json`); nothing was done."
_NEVER_BUSY = ("/healthz", "/metrics")  # neither queued nor touching the database
_BUSY = (
    "Waited longer than this service lets a request wait, or the database is unreachable; nothing was done. "
    "Retry after `Retry-After` seconds."
)

# Bodies whose schema is optional or form-encoded carry no example of their own.
_REASON = {"reason": "Verified shelling of the crossing during the pause."}
_BODY_EXAMPLES: dict[str, Any] = {
    "createToken": {
        "grant_type": "password",
        "username": "coordinator@aidaccess.example",
        "password": "correct horse battery staple",
    },
    "revokeToken": {"token": "q3N2yG0cF0t3M2l0d1Hh0kQm3vB4cXo2y7nq1mJ8f4s", "token_type_hint": "refresh_token"},
    "approveAccessRequest": {
        "lines": [{"line_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e11", "approved_quantity": 15}],
        "note": "Surgical kits reduced to what the checkpoint will pass.",
    },
    "dispatchAccessRequest": {"note": "Left the Damascus warehouse at 06:10 with 40 trucks."},
    "withdrawPause": {"reason": "The parties could not agree on the corridor."},
    "suspendPause": {**_REASON, "violation_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f"},
    "terminatePause": {"reason": "Fighting resumed across the city."},
    "verifyViolation": {"reason": "Confirmed by two field teams."},
    "dismissViolation": {"reason": "Duplicate of an earlier report."},
    "resolveViolation": {"reason": "The checkpoint reopened."},
    "markViolationUnresolved": {"reason": "No answer from the party concerned."},
}

_SIGNATURE_HEADERS = [
    {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": "Unique per delivery; the same on every retry of it. Use it to drop duplicates.",
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": "Unix seconds when this attempt was signed. Refuse old ones (e.g. more than 5 minutes).",
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": "`v1,` + base64(HMAC-SHA256(secret, `{webhook-id}.{webhook-timestamp}.{body}`)); the secret is the "
        "base64 after `whsec_`.",
    },
]

_WEBHOOKS = {
    "event": {
        "post": {
            "operationId": "receiveEvent",
            "summary": "An event you subscribed to",
            "description": "Sent to your webhook's URL for each event of the types it names that its owner may read, in the "
            "Standard Webhooks shape: `type`, `timestamp` and `data`, the same as an item of `GET /v1/events`. The `User-Agent` "
            "is `aidaccess-webhooks/VERSION`. At least once: answer 2xx quickly; anything else, or no "
            "answer within 10 seconds, is retried with exponential backoff for 24 hours. Redirects are not followed.",
            "parameters": _SIGNATURE_HEADERS,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["type", "timestamp", "data"],
                            "properties": {
                                "type": {"$ref": "#/components/schemas/EventType"},
                                "timestamp": {
                                    "type": "string",
                                    "format": "date-time",
                                    "description": "When the event happened.",
                                },
                                "data": {"$ref": "#/components/schemas/EventRead"},
                            },
                        },
                        "example": {
                            "type": "access_request.approved",
                            "timestamp": "2016-10-18T09:12:44.120331Z",
                            "data": {
                                "id": "5f0e2a7c91d4b3e8a0c2f4d6e8b1",
                                "type": "access_request.approved",
                                "occurred_at": "2016-10-18T09:12:44.120331Z",
                                "entity_type": "access_request",
                                "entity_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
                                "state": "approved",
                            },
                        },
                    }
                },
            },
            "responses": {"2XX": {"description": "Received."}},
        }
    }
}


def serve_app() -> FastAPI:
    """The factory ``aidaccess serve`` runs in each worker: JSON logs, settings from the environment."""
    from aidaccess.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
