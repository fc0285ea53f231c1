"""Pure policy: ``can(principal, action, thing)`` answers allowed, or why not.

No database, no HTTP: every decision is made from the principal and the thing alone,
so the whole matrix is testable as a table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aidaccess.auth.principal import Principal
from aidaccess.auth.roles import Role, Scope


class Action(StrEnum):
    read_self = "read_self"
    manage_organizations = "manage_organizations"
    manage_users = "manage_users"
    manage_service_accounts = "manage_service_accounts"
    read_audit = "read_audit"
    read_cities = "read_cities"
    edit_cities = "edit_cities"
    set_designation = "set_designation"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""
    # Refuse as "not found": the caller may not even know the thing exists.
    hide: bool = False

    def __bool__(self) -> bool:
        return self.allowed


ALLOW = Decision(True)

# People act by role.
ROLE_ACTIONS: dict[Action, frozenset[Role]] = {
    Action.read_self: frozenset(Role),
    Action.manage_organizations: frozenset({Role.admin}),
    Action.manage_users: frozenset({Role.admin}),
    Action.manage_service_accounts: frozenset({Role.admin}),
    Action.read_audit: frozenset({Role.coordinator, Role.admin}),
    Action.read_cities: frozenset(Role),
    Action.edit_cities: frozenset({Role.coordinator, Role.admin}),
    Action.set_designation: frozenset({Role.coordinator}),
}

# Service accounts act by scope; an action missing here is never theirs.
SCOPE_ACTIONS: dict[Action, Scope | None] = {
    Action.read_self: None,
    Action.read_cities: Scope.read,
}


class ConvoyVisibility(StrEnum):
    """How much of convoys a caller may see in the access picture."""

    none = "none"  # observers and admins: counts only
    own_organization = "own_organization"  # partners and service accounts
    all = "all"  # coordinators and co-chairs


def convoy_visibility(principal: Principal) -> ConvoyVisibility:
    if principal.is_service_account or principal.role == Role.partner:
        return ConvoyVisibility.own_organization
    if principal.role in (Role.coordinator, Role.co_chair):
        return ConvoyVisibility.all
    return ConvoyVisibility.none


def can(principal: Principal, action: Action, thing: Any = None) -> Decision:  # noqa: ARG001
    if principal.is_service_account:
        if action not in SCOPE_ACTIONS:
            return Decision(False, f"service accounts may not {action.value.replace('_', ' ')}")
        needed = SCOPE_ACTIONS[action]
        if needed is not None and needed.value not in principal.scopes:
            return Decision(False, f"this needs the '{needed.value}' scope")
        return ALLOW
    if principal.role in ROLE_ACTIONS[action]:
        return ALLOW
    return Decision(False, f"the {principal.role} role may not {action.value.replace('_', ' ')}")
