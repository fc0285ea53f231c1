"""Organizations, users and service accounts: what admins manage.

Each service checks policy, applies the change and appends its audit event, in the
caller's transaction; nothing here commits.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, or_, select
from sqlmodel import Session, col

from aidaccess.clock import utcnow
from auth.passwords import MIN_DISTINCT_CHARACTERS, MIN_PASSWORD_LENGTH, PasswordHasher
from auth.policy import Action
from auth.principal import Principal
from auth.roles import ROLE_ORGANIZATION_KINDS, OrganizationKind, Role, Scope, role_fits_organization
from auth.tokens import new_opaque_token
from db.models import Organization, ServiceAccount, User
from workflow.audit import Actor, acting, record_event
from workflow.common import PageRequest, keyset_page, refuse_removal, require
from workflow.errors import Conflict, InvalidInput, NotFound
from workflow.identity import normalize_email, revoke_user_sessions

# ---- organizations -------------------------------------------------------------------


def _name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def _ensure_unique_org_name(session: Session, name: str, *, exclude: uuid.UUID | None = None) -> None:
    stmt = select(col(Organization.id)).where(col(Organization.name_key) == _name_key(name))
    if exclude is not None:
        stmt = stmt.where(col(Organization.id) != exclude)
    if session.execute(stmt).first() is not None:
        raise Conflict(f"An organization named '{name}' exists already.")


def create_organization(
    *, session: Session, actor: Principal | Actor, name: str, kind: OrganizationKind
) -> Organization:
    audit_actor = acting(actor, Action.manage_organizations)
    name = " ".join(name.split())
    _ensure_unique_org_name(session, name)
    organization = Organization(name=name, name_key=_name_key(name), kind=kind.value)
    session.add(organization)
    session.flush()
    record_event(
        session,
        actor=audit_actor,
        entity_type="organization",
        entity_id=organization.id,
        action="created",
        changes={"name": name, "kind": kind},
    )
    return organization


def get_organization(*, session: Session, actor: Principal, organization_id: uuid.UUID) -> Organization:
    require(actor, Action.manage_organizations)
    organization = session.get(Organization, organization_id)
    if organization is None:
        raise NotFound("No such organization.")
    return organization


def list_organizations(
    *,
    session: Session,
    actor: Principal | Actor,
    page: PageRequest,
    kind: OrganizationKind | None = None,
    q: str | None = None,
) -> tuple[list[Organization], bool]:
    acting(actor, Action.manage_organizations)
    stmt = select(Organization)
    if kind is not None:
        stmt = stmt.where(col(Organization.kind) == kind.value)
    if q:
        stmt = stmt.where(col(Organization.name_key).contains(_name_key(q), autoescape=True))
    return keyset_page(session, stmt, col(Organization.id), page)


# What every organization has: an edit may change these, never remove them.
ORGANIZATION_KEPT_ON_EDIT = ("name", "kind")


def update_organization(
    *, session: Session, actor: Principal, organization_id: uuid.UUID, changes: dict[str, Any]
) -> Organization:
    require(actor, Action.manage_organizations)
    organization = get_organization(session=session, actor=actor, organization_id=organization_id)
    refuse_removal(changes, ORGANIZATION_KEPT_ON_EDIT)
    applied: dict[str, Any] = {}
    if changes.get("name") is not None:
        name = " ".join(changes["name"].split())
        if name != organization.name:
            _ensure_unique_org_name(session, name, exclude=organization.id)
            applied["name"] = {"from": organization.name, "to": name}
            organization.name = name
            organization.name_key = _name_key(name)
    if changes.get("kind") is not None:
        kind = OrganizationKind(changes["kind"])
        if kind.value != organization.kind:
            roles = (
                session.execute(select(col(User.role)).where(col(User.organization_id) == organization.id).distinct())
                .scalars()
                .all()
            )
            misfits = sorted(r for r in roles if not role_fits_organization(Role(r), kind))
            if misfits:
                raise Conflict(
                    f"Members with the role(s) {', '.join(misfits)} cannot belong to a {kind.value} organization; "
                    "change their roles first."
                )
            applied["kind"] = {"from": organization.kind, "to": kind.value}
            organization.kind = kind.value
    if applied:
        organization.updated_at = utcnow()
        session.add(organization)
        record_event(
            session,
            actor=Actor.of(actor),
            entity_type="organization",
            entity_id=organization.id,
            action="updated",
            changes=applied,
        )
    return organization


# ---- users ---------------------------------------------------------------------------


def _validate_password(password: str, field: str = "body.password") -> None:
    """The password rules, for every way a password is set (the API, the console, the CLI)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput.field(field, f"A password needs at least {MIN_PASSWORD_LENGTH} characters.", "too_short")
    if len(password) > 1024:
        raise InvalidInput.field(field, "A password may have at most 1024 characters.", "too_long")
    # Length alone lets "aaaaaaaaaaaa" and "121212121212" through: a guesser's first tries.
    if len(set(password)) < MIN_DISTINCT_CHARACTERS:
        raise InvalidInput.field(
            field, f"A password needs at least {MIN_DISTINCT_CHARACTERS} different characters.", "too_simple"
        )


def _role_fits(role: Role, organization: Organization, field: str = "body.role") -> None:
    if not role_fits_organization(role, OrganizationKind(organization.kind)):
        kinds = ", ".join(sorted(k.value for k in ROLE_ORGANIZATION_KINDS[role]))
        raise InvalidInput.field(
            field,
            f"The {role.value} role is only for members of a {kinds} organization; "
            f"'{organization.name}' is a {organization.kind}.",
            "role_organization_mismatch",
        )


def _organization_for(session: Session, organization_id: uuid.UUID, field: str) -> Organization:
    organization = session.get(Organization, organization_id)
    if organization is None:
        raise InvalidInput.field(field, "No organization has this id.", "unknown_reference")
    return organization


def create_user(
    *,
    session: Session,
    actor: Principal | Actor,
    hasher: PasswordHasher,
    email: str,
    full_name: str,
    organization_id: uuid.UUID,
    role: Role,
    password: str,
) -> User:
    audit_actor = acting(actor, Action.manage_users)
    email = normalize_email(email)
    organization = _organization_for(session, organization_id, "body.organization_id")
    _role_fits(role, organization)
    _validate_password(password)
    if session.execute(select(col(User.id)).where(col(User.email) == email)).first() is not None:
        raise Conflict("A user with this email exists already.")
    user = User(
        email=email,
        full_name=" ".join(full_name.split()),
        organization_id=organization.id,
        role=role.value,
        password_hash=hasher.hash(password),
    )
    session.add(user)
    session.flush()
    record_event(
        session,
        actor=audit_actor,
        entity_type="user",
        entity_id=user.id,
        action="created",
        to_state="active",
        changes={"email": email, "full_name": user.full_name, "organization_id": organization.id, "role": role},
    )
    return user


def get_user(*, session: Session, actor: Principal, user_id: uuid.UUID) -> User:
    require(actor, Action.manage_users)
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


def list_users(
    *,
    session: Session,
    actor: Principal | Actor,
    page: PageRequest,
    organization_id: uuid.UUID | None = None,
    role: Role | None = None,
    active: bool | None = None,
    q: str | None = None,
) -> tuple[list[User], bool]:
    acting(actor, Action.manage_users)
    stmt = select(User)
    if organization_id is not None:
        stmt = stmt.where(col(User.organization_id) == organization_id)
    if role is not None:
        stmt = stmt.where(col(User.role) == role.value)
    if active is not None:
        stmt = stmt.where(col(User.active).is_(active))
    if q:
        needle = q.strip().lower()
        stmt = stmt.where(
            or_(
                col(User.email).contains(needle, autoescape=True),
                func.lower(col(User.full_name)).contains(needle, autoescape=True),
            )
        )
    return keyset_page(session, stmt, col(User.id), page)


# What every user has: an edit may change these, never remove them.
USER_KEPT_ON_EDIT = ("full_name", "organization_id", "role", "active", "password")


def update_user(
    *,
    session: Session,
    actor: Principal | Actor,
    hasher: PasswordHasher,
    user_id: uuid.UUID,
    changes: dict[str, Any],
) -> User:
    """An admin's change through the API, or an operator's at the command line (``Actor.system``)."""
    audit_actor = acting(actor, Action.manage_users)
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    refuse_removal(changes, USER_KEPT_ON_EDIT)
    applied: dict[str, Any] = {}
    organization = session.get(Organization, user.organization_id)
    if changes.get("organization_id") is not None and changes["organization_id"] != user.organization_id:
        organization = _organization_for(session, changes["organization_id"], "body.organization_id")
        applied["organization_id"] = {"from": user.organization_id, "to": organization.id}
    role = Role(changes["role"]) if changes.get("role") is not None else Role(user.role)
    assert organization is not None
    _role_fits(role, organization, "body.role" if "role" in changes else "body.organization_id")
    if role.value != user.role:
        applied["role"] = {"from": user.role, "to": role.value}
    if changes.get("full_name") is not None:
        full_name = " ".join(changes["full_name"].split())
        if full_name != user.full_name:
            applied["full_name"] = {"from": user.full_name, "to": full_name}
            user.full_name = full_name
    from_state = "active" if user.active else "inactive"
    active = changes.get("active")
    if isinstance(actor, Principal) and user.id == actor.id and (active is False or ("role" in applied)):
        raise Conflict("Admins cannot deactivate themselves or change their own role; ask another admin.")
    if active is not None and active != user.active:
        applied["active"] = {"from": user.active, "to": active}
        user.active = active
    if changes.get("password") is not None:
        _validate_password(changes["password"])
        user.password_hash = hasher.hash(changes["password"])
        applied["password"] = "changed"  # never the password or its hash
    if not applied:
        return user
    user.organization_id = organization.id
    user.role = role.value
    user.updated_at = utcnow()
    session.add(user)
    to_state = "active" if user.active else "inactive"
    record_event(
        session,
        actor=audit_actor,
        entity_type="user",
        entity_id=user.id,
        action="deactivated"
        if from_state == "active" and to_state == "inactive"
        else "reactivated"
        if from_state != to_state
        else "updated",
        from_state=from_state,
        to_state=to_state,
        changes=applied,
    )
    # A deactivated account, or one whose password was reset, is signed out everywhere.
    if not user.active or "password" in applied:
        user.tokens_valid_after = utcnow()
        revoke_user_sessions(
            session, user_id=user.id, reason="deactivated" if not user.active else "password_reset", actor=audit_actor
        )
    return user


# ---- service accounts ----------------------------------------------------------------


def create_service_account(
    *,
    session: Session,
    actor: Principal | Actor,
    hasher: PasswordHasher,
    name: str,
    organization_id: uuid.UUID,
    scopes: Sequence[Scope],
) -> tuple[ServiceAccount, str]:
    """Returns the account and its secret; the secret is never available again."""
    audit_actor = acting(actor, Action.manage_service_accounts)
    organization = _organization_for(session, organization_id, "body.organization_id")
    secret = new_opaque_token()
    account = ServiceAccount(
        name=" ".join(name.split()),
        client_id="sa_" + secrets.token_hex(12),
        secret_hash=hasher.hash(secret),
        organization_id=organization.id,
        scopes=sorted({s.value for s in scopes}),
    )
    session.add(account)
    session.flush()
    record_event(
        session,
        actor=audit_actor,
        entity_type="service_account",
        entity_id=account.id,
        action="created",
        to_state="active",
        changes={
            "name": account.name,
            "client_id": account.client_id,
            "organization_id": organization.id,
            "scopes": account.scopes,
        },
    )
    return account, secret


def get_service_account(*, session: Session, actor: Principal, account_id: uuid.UUID) -> ServiceAccount:
    require(actor, Action.manage_service_accounts)
    account = session.get(ServiceAccount, account_id)
    if account is None or account.deleted_at is not None:
        raise NotFound("No such service account.")
    return account


def list_service_accounts(
    *, session: Session, actor: Principal, page: PageRequest, organization_id: uuid.UUID | None = None
) -> tuple[list[ServiceAccount], bool]:
    require(actor, Action.manage_service_accounts)
    stmt = select(ServiceAccount).where(col(ServiceAccount.deleted_at).is_(None))
    if organization_id is not None:
        stmt = stmt.where(col(ServiceAccount.organization_id) == organization_id)
    return keyset_page(session, stmt, col(ServiceAccount.id), page)


def delete_service_account(*, session: Session, actor: Principal, account_id: uuid.UUID) -> None:
    account = get_service_account(session=session, actor=actor, account_id=account_id)
    account.deleted_at = utcnow()
    session.add(account)
    record_event(
        session,
        actor=Actor.of(actor),
        entity_type="service_account",
        entity_id=account.id,
        action="deleted",
        from_state="active",
        to_state="deleted",
    )
