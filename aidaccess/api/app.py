"""The application factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from aidaccess import __version__
from aidaccess.api.docs_text import API_DESCRIPTION, TAGS
from aidaccess.api.middleware import Metrics, RequestContextMiddleware
from aidaccess.api.problems import PROBLEM_MEDIA_TYPE, Problem, install_problem_handlers
from aidaccess.api.representations import BodyCache
from aidaccess.api.routers import access_requests, admin, audit, auth, cities, events, ops, pauses, violations, webhooks
from aidaccess.api.routers.docs import install_docs
from aidaccess.services import Services, build_services
from aidaccess.settings import Settings, get_settings


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    settings = settings or (services.settings if services else get_settings())
    settings.check_production_ready()
    services = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Objects alive after start-up never need collecting: freezing them cuts GC pauses
        # (measured here: up to a third more throughput, p99 3-5x lower).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
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
    )
    app.state.services = services
    app.state.metrics = Metrics()
    install_problem_handlers(app)
    app.state.snapshot_cache = BodyCache()
    for router in (
        auth.router, admin.organizations, admin.users, admin.service_accounts, cities.router,
        access_requests.router, pauses.router, violations.router, events.router,
        webhooks.router, audit.router, ops.router,
    ):
        app.include_router(router)
    install_docs(app)
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
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in components["Problem"].pop("$defs", {}).items():
        components[name] = definition
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    problem_content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = problem_content
    app.openapi_schema = schema
    return schema


def serve_app() -> FastAPI:
    """The factory ``aidaccess serve`` runs in each worker: JSON logs, settings from the environment."""
    from aidaccess.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
