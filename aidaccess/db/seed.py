"""Demo data: the taskforce's organizations, a user of each role, and the cities of 2016 reporting."""

from __future__ import annotations

import csv
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlmodel import Session

from aidaccess.auth.passwords import PasswordHasher
from aidaccess.auth.roles import OrganizationKind, Role
from aidaccess.db.models import City, Organization, User
from aidaccess.workflow.admin import create_organization, create_user
from aidaccess.workflow.audit import Actor, record_event

SEED_ACTOR = Actor.system("aidaccess seed demo")
CITIES_CSV = Path(__file__).resolve().parent.parent / "data" / "cities.csv"

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
    ("coordinator@aidaccess.example", "Demo Coordinator", "Humanitarian Access Taskforce Secretariat", Role.coordinator),
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


def load_cities_csv() -> list[dict[str, str]]:
    text = CITIES_CSV.read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def seed_cities(session: Session, *, actor: Actor = SEED_ACTOR) -> int:
    existing = set(session.execute(select(City.pcode)).scalars())
    created = 0
    for row in load_cities_csv():
        if row["pcode"] in existing:
            continue
        city = City(
            name=row["name"],
            name_ar=row["name_ar"] or None,
            aliases=[a.strip() for a in row["aliases"].split(";") if a.strip()],
            pcode=row["pcode"],
            adm1_pcode=row["adm1_pcode"],
            adm1_name=row["adm1_name"],
            latitude=float(row["latitude"]),
            longitude=float(row["longitude"]),
        )
        session.add(city)
        session.flush()
        record_event(
            session, actor=actor, entity_type="city", entity_id=city.id, action="created",
            changes={"name": city.name, "pcode": city.pcode},
        )
        created += 1
    return created


def seed_demo(session: Session, *, hasher: PasswordHasher, password: str | None = None) -> SeedReport:
    """Create what is missing; running it again changes nothing."""
    by_name: dict[str, Organization] = {
        o.name: o for o in session.execute(select(Organization)).scalars()
    }
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
            session=session, actor=SEED_ACTOR, hasher=hasher, email=email, full_name=full_name,
            organization_id=by_name[organization].id, role=role, password=user_password,
        )
        users_created[email] = user_password
    return SeedReport(organizations_created, users_created, seed_cities(session))
