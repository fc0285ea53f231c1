"""Organizations, users and service accounts (admins only)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query
from starlette.responses import Response

from api.deps import CurrentPrincipal, DbSession, ServicesDep, UnitOfWorkRoute
from api.pagination import CursorQuery, LimitQuery, next_cursor, uuid_page
from api.problems import problem_responses
from api.schemas.admin import (
    OrganizationCreate,
    OrganizationPage,
    OrganizationRead,
    OrganizationUpdate,
    ServiceAccountCreate,
    ServiceAccountCreated,
    ServiceAccountPage,
    ServiceAccountRead,
    UserCreate,
    UserPage,
    UserRead,
    UserUpdate,
)
from auth.roles import OrganizationKind, Role
from workflow import admin

organizations = APIRouter(prefix="/v1/organizations", tags=["organizations"], route_class=UnitOfWorkRoute)
users = APIRouter(prefix="/v1/users", tags=["users"], route_class=UnitOfWorkRoute)
service_accounts = APIRouter(prefix="/v1/service-accounts", tags=["service accounts"], route_class=UnitOfWorkRoute)

READ_ERRORS = problem_responses(401, 403, 422)
ONE_ERRORS = problem_responses(401, 403, 404, 422)
WRITE_ERRORS = problem_responses(401, 403, 409, 413, 422)


@organizations.get(
    "",
    operation_id="listOrganizations",
    summary="List organizations",
    response_model=OrganizationPage,
    responses=READ_ERRORS,
)
def list_organizations(
    session: DbSession,
    principal: CurrentPrincipal,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    kind: OrganizationKind | None = None,
    q: str | None = Query(None, max_length=200, description="Part of the name, any case."),
) -> OrganizationPage:
    items, more = admin.list_organizations(
        session=session, actor=principal, page=uuid_page(limit, cursor), kind=kind, q=q
    )
    return OrganizationPage(
        items=[OrganizationRead.model_validate(o) for o in items], next_cursor=next_cursor(items, more)
    )


@organizations.post(
    "",
    operation_id="createOrganization",
    summary="Create an organization",
    status_code=201,
    response_model=OrganizationRead,
    responses=WRITE_ERRORS,
)
def create_organization(body: OrganizationCreate, session: DbSession, principal: CurrentPrincipal) -> OrganizationRead:
    organization = admin.create_organization(session=session, actor=principal, name=body.name, kind=body.kind)
    return OrganizationRead.model_validate(organization)


@organizations.get(
    "/{organization_id}",
    operation_id="getOrganization",
    summary="Get an organization",
    response_model=OrganizationRead,
    responses=ONE_ERRORS,
)
def get_organization(organization_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal) -> OrganizationRead:
    return OrganizationRead.model_validate(
        admin.get_organization(session=session, actor=principal, organization_id=organization_id)
    )


@organizations.patch(
    "/{organization_id}",
    operation_id="updateOrganization",
    summary="Rename an organization or change its kind",
    response_model=OrganizationRead,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
)
def update_organization(
    organization_id: uuid.UUID, body: OrganizationUpdate, session: DbSession, principal: CurrentPrincipal
) -> OrganizationRead:
    organization = admin.update_organization(
        session=session, actor=principal, organization_id=organization_id, changes=body.model_dump(exclude_unset=True)
    )
    return OrganizationRead.model_validate(organization)


@users.get("", operation_id="listUsers", summary="List users", response_model=UserPage, responses=READ_ERRORS)
def list_users(
    session: DbSession,
    principal: CurrentPrincipal,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    organization_id: uuid.UUID | None = None,
    role: Role | None = None,
    active: bool | None = None,
    q: str | None = Query(None, max_length=200, description="Part of the email or name, any case."),
) -> UserPage:
    items, more = admin.list_users(
        session=session,
        actor=principal,
        page=uuid_page(limit, cursor),
        organization_id=organization_id,
        role=role,
        active=active,
        q=q,
    )
    return UserPage(items=[UserRead.model_validate(u) for u in items], next_cursor=next_cursor(items, more))


@users.post(
    "",
    operation_id="createUser",
    summary="Create a user",
    status_code=201,
    response_model=UserRead,
    responses=WRITE_ERRORS,
    description="The role must fit the organization: `coordinator` (and `admin`) in the secretariat, "
    "`co_chair` in a co-chair delegation, `partner` in a UN agency, NGO or Red Cross / Red Crescent "
    "organization, `observer` in an observer organization.",
)
def create_user(body: UserCreate, session: DbSession, services: ServicesDep, principal: CurrentPrincipal) -> UserRead:
    user = admin.create_user(
        session=session,
        actor=principal,
        hasher=services.hasher,
        email=str(body.email),
        full_name=body.full_name,
        organization_id=body.organization_id,
        role=body.role,
        password=body.password,
    )
    return UserRead.model_validate(user)


@users.get("/{user_id}", operation_id="getUser", summary="Get a user", response_model=UserRead, responses=ONE_ERRORS)
def get_user(user_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal) -> UserRead:
    return UserRead.model_validate(admin.get_user(session=session, actor=principal, user_id=user_id))


@users.patch(
    "/{user_id}",
    operation_id="updateUser",
    summary="Update or deactivate a user",
    response_model=UserRead,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    description="`active: false` deactivates the user: their tokens stop working at once and their "
    "sign-ins are ended. A password reset also ends their sign-ins.",
)
def update_user(
    user_id: uuid.UUID, body: UserUpdate, session: DbSession, services: ServicesDep, principal: CurrentPrincipal
) -> UserRead:
    user = admin.update_user(
        session=session,
        actor=principal,
        hasher=services.hasher,
        user_id=user_id,
        changes=body.model_dump(exclude_unset=True),
    )
    return UserRead.model_validate(user)


@service_accounts.get(
    "",
    operation_id="listServiceAccounts",
    summary="List service accounts",
    response_model=ServiceAccountPage,
    responses=READ_ERRORS,
)
def list_service_accounts(
    session: DbSession,
    principal: CurrentPrincipal,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    organization_id: uuid.UUID | None = None,
) -> ServiceAccountPage:
    items, more = admin.list_service_accounts(
        session=session, actor=principal, page=uuid_page(limit, cursor), organization_id=organization_id
    )
    return ServiceAccountPage(
        items=[ServiceAccountRead.model_validate(a) for a in items], next_cursor=next_cursor(items, more)
    )


@service_accounts.post(
    "",
    operation_id="createServiceAccount",
    summary="Create a service account",
    status_code=201,
    response_model=ServiceAccountCreated,
    responses=WRITE_ERRORS,
    description="Returns the `client_secret` once; only its hash is kept. Scopes: `read` (default) and `requests:write`.",
)
def create_service_account(
    body: ServiceAccountCreate, session: DbSession, services: ServicesDep, principal: CurrentPrincipal
) -> ServiceAccountCreated:
    account, secret = admin.create_service_account(
        session=session,
        actor=principal,
        hasher=services.hasher,
        name=body.name,
        organization_id=body.organization_id,
        scopes=body.scopes,
    )
    return ServiceAccountCreated(**ServiceAccountRead.model_validate(account).model_dump(), client_secret=secret)


@service_accounts.delete(
    "/{account_id}",
    operation_id="deleteServiceAccount",
    summary="Delete a service account",
    status_code=204,
    responses=problem_responses(401, 403, 404, 422),
    description="Its tokens stop working at once. The account stays in the audit trail.",
)
def delete_service_account(account_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal) -> Response:
    admin.delete_service_account(session=session, actor=principal, account_id=account_id)
    return Response(status_code=204)
