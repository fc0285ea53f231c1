from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from api.schemas.common import Kept, PageMeta
from auth.roles import OrganizationKind, Role, Scope

Name = Field(min_length=1, max_length=200, pattern=r"\S")


class OrganizationCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"name": "World Food Programme", "kind": "un_agency"}}
    )
    name: str = Name
    kind: OrganizationKind


class OrganizationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"name": "WFP Syria"}})
    name: Kept[Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]] = None
    kind: Kept[OrganizationKind] = None


class OrganizationRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
                "name": "World Food Programme",
                "kind": "un_agency",
                "created_at": "2016-10-18T09:12:44Z",
                "updated_at": "2016-10-18T09:12:44Z",
            }
        },
    )
    id: uuid.UUID
    name: str
    kind: OrganizationKind
    created_at: datetime
    updated_at: datetime


class OrganizationPage(PageMeta):
    items: list[OrganizationRead]


class UserCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "email": "amina.haddad@wfp.example",
                "full_name": "Amina Haddad",
                "organization_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
                "role": "partner",
                "password": "correct horse battery staple",
            }
        },
    )
    email: EmailStr = Field(max_length=320)
    full_name: str = Name
    organization_id: uuid.UUID
    role: Role
    password: str = Field(min_length=12, max_length=1024, description="At least 12 characters.")


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"active": False}})
    full_name: Kept[Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]] = None
    organization_id: Kept[uuid.UUID] = None
    role: Kept[Role] = None
    active: Kept[bool] = Field(None, description="`false` deactivates: every token of the user stops working at once.")
    password: Kept[Annotated[str, Field(min_length=12, max_length=1024)]] = Field(
        None, description="Resets the password and signs the user out."
    )


class UserRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
                "email": "amina.haddad@wfp.example",
                "full_name": "Amina Haddad",
                "organization_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e10",
                "role": "partner",
                "active": True,
                "created_at": "2016-10-18T09:12:44Z",
                "updated_at": "2016-10-18T09:12:44Z",
            }
        },
    )
    id: uuid.UUID
    email: str
    full_name: str
    organization_id: uuid.UUID
    role: Role
    active: bool
    created_at: datetime
    updated_at: datetime


class UserPage(PageMeta):
    items: list[UserRead]


class ServiceAccountCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "name": "OCHA dashboard",
                "organization_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
                "scopes": ["read"],
            }
        },
    )
    name: str = Name
    organization_id: uuid.UUID
    scopes: list[Scope] = Field(
        default_factory=lambda: [Scope.read], max_length=10, description="Read-only unless an admin grants more."
    )


class ServiceAccountRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
                "name": "OCHA dashboard",
                "client_id": "sa_3f1c9b2a7d4e6f8091a2b3c4",
                "organization_id": "01934f6e-8a2b-7c3d-9e4f-5a6b7c8d9e10",
                "scopes": ["read"],
                "created_at": "2016-10-18T09:12:44Z",
            }
        },
    )
    id: uuid.UUID
    name: str
    client_id: str
    organization_id: uuid.UUID
    scopes: list[str]
    created_at: datetime


class ServiceAccountCreated(ServiceAccountRead):
    client_secret: str = Field(description="Shown this once; only its hash is kept.")


class ServiceAccountPage(PageMeta):
    items: list[ServiceAccountRead]
