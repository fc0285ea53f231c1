"""Liveness, readiness and metrics, for the orchestrator and Prometheus."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from aidaccess.settings import MetricsAccess
from api.problems import problem, problem_responses

router = APIRouter(tags=["operations"])


@router.get("/healthz", operation_id="getHealth", summary="Liveness", include_in_schema=True)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    operation_id="getReadiness",
    summary="Readiness: database reachable and migrated to head",
    responses={503: {"description": "Not ready; `detail` says why."}},
)
async def readyz(request: Request) -> Response:
    ok, detail = await run_in_threadpool(request.app.state.services.database.readiness)
    if not ok:
        return problem(503, detail, instance="/readyz")
    return JSONResponse({"status": "ready", "migration": detail})


def _may_read_metrics(request: Request) -> bool:
    """AIDACCESS_METRICS: off; local (a client on this machine); token (the bearer AIDACCESS_METRICS_TOKEN)."""
    settings = request.app.state.services.settings
    if settings.metrics == MetricsAccess.local:
        try:
            return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
        except ValueError:
            return False
    if settings.metrics == MetricsAccess.token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.encode(), (settings.metrics_token or "").encode()
        )
    return False


@router.get(
    "/metrics",
    operation_id="getMetrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses=problem_responses(404),
    description="Who may read it is configured (`AIDACCESS_METRICS`: `local`, the default, `token` or `off`); "
    "to anyone else it does not exist (404).",
)
async def metrics(request: Request) -> Response:
    if not _may_read_metrics(request):
        return problem(404, "Not found.", instance=request.url.path)
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
