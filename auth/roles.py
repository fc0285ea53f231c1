"""Roles, scopes and organization kinds, and which role fits which kind of organization."""

from __future__ import annotations

from enum import StrEnum


class OrganizationKind(StrEnum):
    un_agency = "un_agency"
    ngo = "ngo"
    red_cross_red_crescent = "red_cross_red_crescent"
    secretariat = "secretariat"
    co_chair_delegation = "co_chair_delegation"
    observer = "observer"


class Role(StrEnum):
    partner = "partner"
    coordinator = "coordinator"
    co_chair = "co_chair"
    observer = "observer"
    admin = "admin"


class Scope(StrEnum):
    """What a service account may do; people act by role, not scope."""

    read = "read"
    requests_write = "requests:write"


class PrincipalKind(StrEnum):
    user = "user"
    service_account = "service_account"


PARTNER_KINDS = frozenset({OrganizationKind.un_agency, OrganizationKind.ngo, OrganizationKind.red_cross_red_crescent})

# A role is only given to a member of an organization of one of these kinds.
ROLE_ORGANIZATION_KINDS: dict[Role, frozenset[OrganizationKind]] = {
    Role.partner: PARTNER_KINDS,
    Role.coordinator: frozenset({OrganizationKind.secretariat}),
    Role.co_chair: frozenset({OrganizationKind.co_chair_delegation}),
    Role.observer: frozenset({OrganizationKind.observer}),
    # Admins run the system; the secretariat hosts it.
    Role.admin: frozenset({OrganizationKind.secretariat}),
}


def role_fits_organization(role: Role, kind: OrganizationKind) -> bool:
    return kind in ROLE_ORGANIZATION_KINDS[role]
