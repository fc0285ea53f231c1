"""Pure policy: ``can(principal, action, thing)`` answers allowed, or why not.

No database, no HTTP: every decision is made from the principal and the thing alone,
so the whole matrix is testable as a table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from aidaccess.clock import day_start
from auth.principal import Principal
from auth.roles import Role, Scope


class Action(StrEnum):
    read_self = "read_self"
    manage_organizations = "manage_organizations"
    manage_users = "manage_users"
    manage_service_accounts = "manage_service_accounts"
    read_audit = "read_audit"
    read_cities = "read_cities"
    edit_cities = "edit_cities"
    set_designation = "set_designation"
    read_pauses = "read_pauses"
    manage_pauses = "manage_pauses"
    report_violation = "report_violation"
    follow_up_violation = "follow_up_violation"
    subscribe_calendar = "subscribe_calendar"
    export_access_requests = "export_access_requests"


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
    Action.read_pauses: frozenset(Role),
    Action.manage_pauses: frozenset({Role.coordinator}),
    Action.report_violation: frozenset({Role.partner, Role.coordinator, Role.co_chair}),
    Action.follow_up_violation: frozenset({Role.coordinator}),
    Action.subscribe_calendar: frozenset(Role),
    # Every convoy's route, dates and cargo in one file: the secretariat's working copy.
    Action.export_access_requests: frozenset({Role.coordinator}),
}

# Service accounts act by scope; an action missing here is never theirs.
SCOPE_ACTIONS: dict[Action, Scope | None] = {
    Action.read_self: None,
    Action.read_cities: Scope.read,
    Action.read_pauses: Scope.read,
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


def sees_every_convoy(principal: Principal) -> bool:
    return convoy_visibility(principal) == ConvoyVisibility.all


def convoy_moment(
    principal: Principal, moment: datetime, now: datetime, *, own_organization_only: bool = False
) -> datetime:
    """The moment at which an answer about convoys is taken for this caller.

    A convoy's timing is a target's timing. A caller who may not read every convoy an answer
    counts (partners, service accounts, observers and admins, except where the answer counts
    only its own organization's convoys) gets convoys as they stood at the start of the
    taskforce's calendar day of ``moment``, and never later than the start of today: then no
    count, ``as_of`` answer, ETag or time it is given moves within a day, so none of them
    locates another organization's approval, dispatch, departure or arrival finer than the day
    (SECURITY.md, "Convoy timing").
    """
    if own_organization_only or sees_every_convoy(principal):
        return moment
    return day_start(min(moment, now))


# The audit trail's entity types whose events describe convoys: a request's route, dates, cargo and
# contact; a violation's place and time, and the request it names.
CONVOY_ENTITY_TYPES = ("access_request", "violation")


def reads_every_audit_detail(principal: Principal) -> bool:
    """Whether the audit trail may show this caller every event in full (ids, hashes, what changed):
    only a caller who may read every thing the trail records. Anyone else (admins) gets the events
    on convoys as that they happened, on which day, and by which organization, in a list of their
    own (an id or a position among the events it may read would place them in time), and every
    other event without its id and hashes (their gaps would count the events it may not see)."""
    return sees_every_convoy(principal)


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


# ---- access requests -----------------------------------------------------------------


class RequestAction(StrEnum):
    create = "create"
    edit = "edit"
    submit = "submit"
    request_changes = "request_changes"
    approve = "approve"
    deny = "deny"
    dispatch = "dispatch"
    complete = "complete"
    cancel = "cancel"


class RequestCapacity(StrEnum):
    """In what capacity a caller acts on one request."""

    owner = "owner"  # a partner, or a service account with requests:write, of the requesting organization
    coordinator = "coordinator"  # any coordinator
    reviewer = "reviewer"  # a coordinator of another organization: never one's own organization's request


# Who may take each action, whatever the state (the state is the transition table's business).
REQUEST_ACTION_CAPACITIES: dict[RequestAction, frozenset[RequestCapacity]] = {
    RequestAction.create: frozenset({RequestCapacity.owner}),
    RequestAction.edit: frozenset({RequestCapacity.owner}),
    RequestAction.submit: frozenset({RequestCapacity.owner}),
    RequestAction.dispatch: frozenset({RequestCapacity.owner}),
    RequestAction.complete: frozenset({RequestCapacity.owner, RequestCapacity.coordinator}),
    RequestAction.cancel: frozenset({RequestCapacity.owner, RequestCapacity.coordinator}),
    RequestAction.request_changes: frozenset({RequestCapacity.reviewer}),
    RequestAction.approve: frozenset({RequestCapacity.reviewer}),
    RequestAction.deny: frozenset({RequestCapacity.reviewer}),
}


def can_read_request(principal: Principal, organization_id: Any) -> Decision:
    """Convoy routes and dates are security-sensitive: a partner sees its own
    organization's requests only; observers and admins none (observers get counts)."""
    if principal.is_service_account:
        if principal.organization_id != organization_id:
            return Decision(False, "not found", hide=True)
        if not principal.scopes & {Scope.read.value, Scope.requests_write.value}:
            return Decision(False, "this needs the 'read' scope")
        return ALLOW
    if principal.role in (Role.coordinator, Role.co_chair):
        return ALLOW
    if principal.role == Role.partner and principal.organization_id == organization_id:
        return ALLOW
    return Decision(False, "not found", hide=True)


def request_capacities(principal: Principal, organization_id: Any) -> frozenset[RequestCapacity]:
    capacities = set()
    own = principal.organization_id == organization_id
    if own and (
        principal.role == Role.partner
        or (principal.is_service_account and Scope.requests_write.value in principal.scopes)
    ):
        capacities.add(RequestCapacity.owner)
    if principal.role == Role.coordinator:
        capacities.add(RequestCapacity.coordinator)
        if not own:
            capacities.add(RequestCapacity.reviewer)
    return frozenset(capacities)


def can_act_on_request(principal: Principal, action: RequestAction, organization_id: Any) -> Decision:
    """For ``create``, ``organization_id`` is the organization the request would belong to."""
    if action != RequestAction.create:
        readable = can_read_request(principal, organization_id)
        if not readable:
            return readable
    if REQUEST_ACTION_CAPACITIES[action] & request_capacities(principal, organization_id):
        return ALLOW
    if principal.role == Role.coordinator and action in (
        RequestAction.approve,
        RequestAction.deny,
        RequestAction.request_changes,
    ):
        return Decision(False, "a coordinator never reviews a request of their own organization")
    who = principal.role.value if principal.role else "service account without the 'requests:write' scope"
    return Decision(False, f"a {who} may not {action.value.replace('_', ' ')} access requests")


def can_list_requests(principal: Principal) -> Decision:
    """Lists show routes and dates: not for observers or admins (observers get counts)."""
    if principal.role in (Role.observer, Role.admin):
        return Decision(False, f"the {principal.role} role reads counts only: GET /v1/access-requests/counts")
    if principal.is_service_account:
        return can_read_request(principal, principal.organization_id)
    return ALLOW


def can_count_requests(principal: Principal) -> Decision:
    if principal.is_service_account or principal.role in (Role.partner, Role.coordinator, Role.co_chair, Role.observer):
        return ALLOW
    return Decision(False, f"the {principal.role} role does not read access requests")


# ---- pauses and violations -----------------------------------------------------------


def can_endorse_pause(principal: Principal, required_delegations: Any) -> Decision:
    """A co-chair endorses or objects on behalf of their own delegation, if it is required."""
    if principal.role != Role.co_chair:
        who = principal.role.value if principal.role else "service account"
        return Decision(False, f"only co-chairs endorse pauses, not a {who}")
    if principal.organization_id not in required_delegations:
        return Decision(False, "your delegation's endorsement is not among those this pause needs")
    return ALLOW


def can_read_violation(principal: Principal, reporter_organization_id: Any, request_organization_id: Any) -> Decision:
    """Coordinators and co-chairs read all; partners what their organization reported or
    what concerns its requests; observers and admins none."""
    if principal.role in (Role.coordinator, Role.co_chair):
        return ALLOW
    own = {reporter_organization_id, request_organization_id} - {None}
    if principal.is_service_account:
        if Scope.read.value in principal.scopes and principal.organization_id in own:
            return ALLOW
        return Decision(False, "not found", hide=True)
    if principal.role == Role.partner and principal.organization_id in own:
        return ALLOW
    return Decision(False, "not found", hide=True)


def can_list_violations(principal: Principal) -> Decision:
    if principal.role in (Role.observer, Role.admin):
        return Decision(False, f"the {principal.role} role does not read violations")
    if principal.is_service_account and Scope.read.value not in principal.scopes:
        return Decision(False, "this needs the 'read' scope")
    return ALLOW
