from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

from auth.principal import Principal
from auth.roles import OrganizationKind, PrincipalKind, Role


class TokenRead(BaseModel):
    access_token: str
    token_type: str = Field("bearer", examples=["bearer"])
    expires_in: int = Field(description="Seconds until the access token expires.", examples=[600])
    refresh_token: str | None = Field(
        None, description="People only. Single use: each refresh returns a new one; reusing one ends the sign-in."
    )
    scope: str = Field("", description="Space-separated scopes (service accounts).", examples=["read"])

    model_config = {
        "json_schema_extra": {
            "example": {
                "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
                "token_type": "bearer",
                "expires_in": 600,
                "refresh_token": "q3N2yG0cF0t3M2l0d1Hh0kQm3vB4cXo2y7nq1mJ8f4s",
                "scope": "",
            }
        }
    }


class OrganizationRef(BaseModel):
    id: uuid.UUID
    name: str
    kind: OrganizationKind


class MeRead(BaseModel):
    kind: PrincipalKind
    id: uuid.UUID
    email: str | None = Field(None, description="People only.")
    client_id: str | None = Field(None, description="Service accounts only.")
    name: str
    role: Role | None = Field(None, description="People only; service accounts act by scope.")
    scopes: list[str]
    organization: OrganizationRef
    token_expires_at: int = Field(description="Unix time at which this access token expires.")

    model_config = {
        "json_schema_extra": {
            "example": {
                "kind": "user",
                "id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
                "email": "coordinator@secretariat.example",
                "client_id": None,
                "name": "Demo Coordinator",
                "role": "coordinator",
                "scopes": [],
                "organization": {
                    "id": "01934f6e-8a2b-7c3d-9e4f-000000000001",
                    "name": "Taskforce Secretariat",
                    "kind": "secretariat",
                },
                "token_expires_at": 1795000000,
            }
        }
    }


def me_json(principal: Principal) -> bytes:
    """``GET /v1/me``'s body, rendered the same way by the endpoint and by the fast path."""
    return (
        MeRead(
            kind=principal.kind,
            id=principal.id,
            email=principal.label if principal.is_user else None,
            client_id=principal.label if principal.is_service_account else None,
            name=principal.name,
            role=principal.role,
            scopes=sorted(principal.scopes),
            organization=OrganizationRef(
                id=principal.organization_id, name=principal.organization_name, kind=principal.organization_kind
            ),
            token_expires_at=principal.token_expires_at,
        )
        .model_dump_json()
        .encode()
    )
