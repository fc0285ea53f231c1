"""Webhook subscriptions and their deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from api.deps import CurrentPrincipal, DbSession, ServicesDep, UnitOfWorkRoute
from api.problems import problem_responses
from workflow import webhooks as workflow
from workflow.events import EventType

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], route_class=UnitOfWorkRoute)


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "url": "https://dashboard.example.org/hooks/aidaccess",
                "event_types": ["access_request.approved", "pause.approved"],
            }
        },
    )
    url: str = Field(
        max_length=2048, description="https (http://127.0.0.1 in development only); never an internal address."
    )
    event_types: list[EventType] = Field(min_length=1, max_length=100)


class WebhookRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
                "url": "https://dashboard.example.org/hooks/aidaccess",
                "event_types": ["access_request.approved"],
                "status": "active",
                "failing_since": None,
                "created_at": "2016-10-18T09:12:44Z",
            }
        },
    )
    id: uuid.UUID
    url: str
    event_types: list[EventType]
    status: str = Field(description="`active`, or `failing` after a delivery was given up on (24 hours of retries).")
    failing_since: datetime | None
    created_at: datetime


class WebhookCreated(WebhookRead):
    secret: str = Field(
        description="Shown this once. Verify each delivery's `webhook-signature` with it (Standard Webhooks)."
    )


class AttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e11",
                "event_id": 4211,
                "event_type": "access_request.approved",
                "status": "delivered",
                "attempts": [
                    {"attempted_at": "2016-10-18T09:12:45Z", "status_code": 503, "error": None, "duration_ms": 120},
                    {"attempted_at": "2016-10-18T09:12:51Z", "status_code": 204, "error": None, "duration_ms": 85},
                ],
                "next_attempt_at": None,
                "created_at": "2016-10-18T09:12:44Z",
                "delivered_at": "2016-10-18T09:12:51Z",
            }
        }
    )
    id: uuid.UUID
    event_id: int
    event_type: str
    status: str = Field(description="`pending`, `delivered` or `abandoned`.")
    attempts: list[AttemptRead]
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None


@router.get(
    "",
    operation_id="listWebhooks",
    summary="Your webhooks",
    response_model=list[WebhookRead],
    responses=problem_responses(401),
)
def list_webhooks(session: DbSession, principal: CurrentPrincipal) -> list[WebhookRead]:
    return [WebhookRead.model_validate(s) for s in workflow.list_subscriptions(session=session, actor=principal)]


@router.post(
    "",
    operation_id="createWebhook",
    summary="Subscribe to events",
    status_code=201,
    response_model=WebhookCreated,
    responses=problem_responses(401, 413, 422),
    description="Deliveries carry the change feed's event as JSON, signed per Standard Webhooks (`webhook-id`, "
    "`webhook-timestamp`, `webhook-signature` = `v1,` + base64 HMAC-SHA256 of `id.timestamp.body` with the "
    "secret). At least once: retried with backoff for 24 hours. You get only what you may read.",
)
def create_webhook(
    body: WebhookCreate, session: DbSession, services: ServicesDep, principal: CurrentPrincipal
) -> WebhookCreated:
    subscription = workflow.create_subscription(
        session=session,
        actor=principal,
        url=body.url,
        event_types=[t.value for t in body.event_types],
        production=services.settings.is_production,
    )
    return WebhookCreated(**WebhookRead.model_validate(subscription).model_dump(), secret=subscription.secret)


@router.delete(
    "/{webhook_id}",
    operation_id="deleteWebhook",
    summary="Unsubscribe",
    status_code=204,
    responses=problem_responses(401, 404, 422),
)
def delete_webhook(webhook_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal) -> Response:
    workflow.delete_subscription(session=session, actor=principal, subscription_id=webhook_id)
    return Response(status_code=204)


@router.get(
    "/{webhook_id}/deliveries",
    operation_id="listWebhookDeliveries",
    summary="Recent deliveries and their attempts",
    response_model=list[DeliveryRead],
    responses=problem_responses(401, 404, 422),
)
def list_deliveries(webhook_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal) -> list[DeliveryRead]:
    return [
        DeliveryRead(
            id=d.id,
            event_id=d.event_id,
            event_type=d.event_type,
            status=d.status,
            attempts=[AttemptRead.model_validate(a) for a in attempts],
            next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
        )
        for d, attempts in workflow.deliveries(session=session, actor=principal, subscription_id=webhook_id)
    ]
