"""Who is calling: a person (by role) or a service account (by scopes)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from auth.roles import OrganizationKind, PrincipalKind, Role


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
    id: uuid.UUID
    label: str  # email for people, client id for service accounts
    name: str
    organization_id: uuid.UUID
    organization_name: str
    organization_kind: OrganizationKind
    role: Role | None  # None for service accounts
    scopes: frozenset[str]
    token_id: str
    token_expires_at: int
    session_id: uuid.UUID | None = None

    @property
    def is_user(self) -> bool:
        return self.kind == PrincipalKind.user

    @property
    def is_service_account(self) -> bool:
        return self.kind == PrincipalKind.service_account
