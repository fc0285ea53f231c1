"""Demo data: the taskforce's organizations, a user of each role, and the cities of 2016 reporting."""

from __future__ import annotations

import csv
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlmodel import Session

from auth.passwords import PasswordHasher
from auth.roles import OrganizationKind, Role
from db.models import City, Designation, Organization, User
from workflow.admin import create_organization, create_user
from workflow.audit import Actor
from workflow.cities import DesignationStatus, create_city, record_designation

SEED_ACTOR = Actor.system("aidaccess seed demo")
CITIES_CSV = Path(__file__).resolve().parent / "cities.csv"

DEMO_ORGANIZATIONS: list[tuple[str, OrganizationKind]] = [
    ("Humanitarian Access Taskforce Secretariat", OrganizationKind.secretariat),
    ("Co-chair Delegation Alpha", OrganizationKind.co_chair_delegation),
    ("Co-chair Delegation Bravo", OrganizationKind.co_chair_delegation),
    ("World Food Programme", OrganizationKind.un_agency),
    ("Syrian Arab Red Crescent", OrganizationKind.red_cross_red_crescent),
    ("Donor Monitoring Group", OrganizationKind.observer),
]

DEMO_USERS: list[tuple[str, str, str, Role]] = [
    ("admin@aidaccess.example", "Demo Admin", "Humanitarian Access Taskforce Secretariat", Role.admin),
    (
        "coordinator@aidaccess.example",
        "Demo Coordinator",
        "Humanitarian Access Taskforce Secretariat",
        Role.coordinator,
    ),
    ("cochair.alpha@aidaccess.example", "Demo Co-chair Alpha", "Co-chair Delegation Alpha", Role.co_chair),
    ("cochair.bravo@aidaccess.example", "Demo Co-chair Bravo", "Co-chair Delegation Bravo", Role.co_chair),
    ("partner.wfp@aidaccess.example", "Demo Partner WFP", "World Food Programme", Role.partner),
    ("partner.sarc@aidaccess.example", "Demo Partner SARC", "Syrian Arab Red Crescent", Role.partner),
    ("observer@aidaccess.example", "Demo Observer", "Donor Monitoring Group", Role.observer),
]


@dataclass
class SeedReport:
    organizations_created: int
    users_created: dict[str, str]  # email -> password, shown once
    cities_created: int
    designations_created: int


def load_cities_csv() -> list[dict[str, str]]:
    text = CITIES_CSV.read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def seed_cities(session: Session, *, actor: Actor = SEED_ACTOR) -> int:
    existing = set(session.execute(select(City.pcode)).scalars())
    created = 0
    for row in load_cities_csv():
        if row["pcode"] in existing:
            continue
        create_city(
            session=session,
            actor=actor,
            data={
                "name": row["name"],
                "name_ar": row["name_ar"] or None,
                "aliases": [a for a in row["aliases"].split(";") if a.strip()],
                "pcode": row["pcode"],
                "adm1_pcode": row["adm1_pcode"],
                "adm1_name": row["adm1_name"],
                "latitude": float(row["latitude"]),
                "longitude": float(row["longitude"]),
            },
        )
        created += 1
    return created


_GOS = "Government of Syria and allied forces"
_SOURCE_2016 = "Demo data modelled on the UN's 2016 reporting of besieged and hard-to-reach areas"

# (pcode, status, besieged_by, severity, effective_from, reason, source), in order per city.
DEMO_DESIGNATIONS: list[tuple[str, DesignationStatus, str | None, int, str, str, str]] = [
    (
        "C1001",
        DesignationStatus.accessible,
        None,
        1,
        "2016-01-01T00:00:00+02:00",
        "Government-held capital; convoys are dispatched from here.",
        _SOURCE_2016,
    ),
    (
        "C1007",
        DesignationStatus.hard_to_reach,
        None,
        3,
        "2016-01-01T00:00:00+02:00",
        "Eastern Aleppo is reachable only across front lines, by the Castello road.",
        _SOURCE_2016,
    ),
    (
        "C1007",
        DesignationStatus.besieged,
        _GOS,
        5,
        "2016-07-17T00:00:00+03:00",
        "The Castello road, the last route into eastern Aleppo, was cut.",
        _SOURCE_2016 + " (eastern Aleppo from July 2016)",
    ),
    (
        "C2227",
        DesignationStatus.hard_to_reach,
        None,
        4,
        "2016-01-01T00:00:00+02:00",
        "Held by ISIL; no regular humanitarian access.",
        _SOURCE_2016,
    ),
    (
        "C2450",
        DesignationStatus.besieged,
        "Government of Syria and Hezbollah",
        5,
        "2015-07-01T00:00:00+03:00",
        "Encircled since July 2015; starvation reported in January 2016.",
        _SOURCE_2016,
    ),
    (
        "C2429",
        DesignationStatus.besieged,
        "Government of Syria and Hezbollah",
        5,
        "2015-07-01T00:00:00+03:00",
        "Encircled together with Madaya; access only under the Four Towns agreement.",
        _SOURCE_2016,
    ),
    (
        "C2498",
        DesignationStatus.besieged,
        "Government of Syria",
        5,
        "2012-11-08T00:00:00+02:00",
        "Encircled since November 2012; the first convoy in four years reached it in June 2016.",
        _SOURCE_2016,
    ),
    (
        "C2499",
        DesignationStatus.besieged,
        "Government of Syria",
        4,
        "2016-01-01T00:00:00+02:00",
        "Encircled; movement of people and goods blocked at checkpoints.",
        _SOURCE_2016,
    ),
    (
        "C2338",
        DesignationStatus.besieged,
        "Government of Syria",
        5,
        "2013-10-01T00:00:00+03:00",
        "Part of besieged Eastern Ghouta; convoys rarely allowed through.",
        _SOURCE_2016,
    ),
    (
        "C2528",
        DesignationStatus.accessible,
        None,
        2,
        "2016-01-01T00:00:00+02:00",
        "Government-held; the al-Waer neighbourhood is besieged and not modelled separately here.",
        _SOURCE_2016,
    ),
    (
        "C3871",
        DesignationStatus.hard_to_reach,
        None,
        3,
        "2016-01-01T00:00:00+02:00",
        "Held by armed opposition groups; reached cross-border and across lines.",
        _SOURCE_2016,
    ),
    (
        "C3905",
        DesignationStatus.besieged,
        "Non-state armed groups",
        5,
        "2015-03-28T00:00:00+02:00",
        "Encircled since Idlib fell in March 2015; access only under the Four Towns agreement.",
        _SOURCE_2016,
    ),
    (
        "C3952",
        DesignationStatus.besieged,
        "Non-state armed groups",
        5,
        "2015-03-28T00:00:00+02:00",
        "Encircled together with Al-Fu'ah.",
        _SOURCE_2016,
    ),
    (
        "C5086",
        DesignationStatus.besieged,
        "ISIL",
        5,
        "2015-01-15T00:00:00+02:00",
        "Government-held neighbourhoods encircled by ISIL; reached only by high-altitude airdrops from April 2016.",
        _SOURCE_2016,
    ),
    (
        "C5710",
        DesignationStatus.hard_to_reach,
        None,
        4,
        "2016-01-01T00:00:00+02:00",
        "Held by ISIL; no humanitarian access.",
        _SOURCE_2016,
    ),
]


def seed_designations(session: Session, *, decided_by: User | None) -> int:
    """The 2016 designations, for cities that have none yet."""
    cities = {c.pcode: c for c in session.execute(select(City)).scalars()}
    designated = set(session.execute(select(Designation.city_id).distinct()).scalars())
    created = 0
    for pcode, status, besieged_by, severity, effective_from, reason, source in DEMO_DESIGNATIONS:
        city = cities.get(pcode)
        if city is None or city.id in designated:
            continue
        record_designation(
            session=session,
            actor=SEED_ACTOR,
            city_id=city.id,
            data={
                "status": status,
                "besieged_by": besieged_by,
                "severity": severity,
                "effective_from": datetime.fromisoformat(effective_from),
                "reason": reason,
                "source": source,
            },
            decided_by_id=decided_by.id if decided_by else None,
        )
        created += 1
    return created


def seed_demo(session: Session, *, hasher: PasswordHasher, password: str | None = None) -> SeedReport:
    """Create what is missing; running it again changes nothing."""
    by_name: dict[str, Organization] = {o.name: o for o in session.execute(select(Organization)).scalars()}
    organizations_created = 0
    for name, kind in DEMO_ORGANIZATIONS:
        if name not in by_name:
            by_name[name] = create_organization(session=session, actor=SEED_ACTOR, name=name, kind=kind)
            organizations_created += 1
    existing_emails = set(session.execute(select(User.email)).scalars())
    users_created: dict[str, str] = {}
    for email, full_name, organization, role in DEMO_USERS:
        if email in existing_emails:
            continue
        user_password = password or secrets.token_urlsafe(12)
        create_user(
            session=session,
            actor=SEED_ACTOR,
            hasher=hasher,
            email=email,
            full_name=full_name,
            organization_id=by_name[organization].id,
            role=role,
            password=user_password,
        )
        users_created[email] = user_password
    cities_created = seed_cities(session)
    coordinator = session.execute(
        select(User).where(User.email == "coordinator@aidaccess.example")
    ).scalar_one_or_none()
    designations_created = seed_designations(session, decided_by=coordinator)
    return SeedReport(organizations_created, users_created, cities_created, designations_created)
