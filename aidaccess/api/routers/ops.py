"""Liveness, readiness and metrics, for the orchestrator and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from aidaccess.api.problems import problem
from aidaccess.db.migrations import current_revision, head_revision

router = APIRouter(tags=["operations"])


@router.get("/healthz", operation_id="getHealth", summary="Liveness", include_in_schema=True)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _check_database(request: Request) -> tuple[bool, str]:
    database = request.app.state.services.database
    try:
        with database.engine.connect() as connection:
            current = current_revision(connection)
    except Exception as exc:  # any failure means not ready; the type is enough to act on
        return False, f"database unreachable ({type(exc).__name__})"
    head = head_revision()
    if current != head:
        return False, f"database schema at {current or 'nothing'}, code expects {head}: run 'aidaccess db upgrade'"
    return True, head


@router.get(
    "/readyz",
    operation_id="getReadiness",
    summary="Readiness: database reachable and migrated to head",
    responses={503: {"description": "Not ready; `detail` says why."}},
)
async def readyz(request: Request) -> Response:
    ok, detail = await run_in_threadpool(_check_database, request)
    if not ok:
        return problem(503, detail, instance="/readyz")
    return JSONResponse({"status": "ready", "migration": detail})


@router.get("/metrics", operation_id="getMetrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
