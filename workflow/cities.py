"""Cities and their access designations.

A designation is appended, never edited; a correction is a new designation naming the
one it corrects, which then no longer counts. A city's designation at a moment is the
latest effective one at that moment among those not corrected.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Subquery, and_, exists, func, select, tuple_
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from aidaccess.clock import utcnow
from auth.policy import Action
from auth.principal import Principal
from db.models import City, Designation
from workflow.audit import Actor, acting, record_event
from workflow.common import AnyRow, PageRequest, refuse_removal, require
from workflow.errors import Conflict, InvalidInput, NotFound

PCODE_PATTERN = r"^C\d{4,6}$"
ADM1_PCODE_PATTERN = r"^SY\d{2}$"


class DesignationStatus(StrEnum):
    accessible = "accessible"
    hard_to_reach = "hard_to_reach"
    besieged = "besieged"


# ---- search --------------------------------------------------------------------------

_ARABIC_FOLDS = (("أإآٱ", "ا"), ("ى", "ي"), ("ة", "ه"), ("ؤ", "و"), ("ئ", "ي"))


def fold(text: str) -> str:
    """Fold a name for search: case, Latin diacritics, Arabic hamza/alef/taa marbuta forms
    and short vowels, punctuation and spaces, so "duma", "Al-Fu'ah" ~ "alfuah" and "دوما" match."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    for variants, plain in _ARABIC_FOLDS:
        for variant in variants:
            text = text.replace(variant, plain)
    return re.sub(r"[\W_]+", "", text)


def city_search_text(name: str, name_ar: str | None, aliases: Iterable[str], pcode: str) -> str:
    # Separators keep a query from matching across two names.
    return "|" + "|".join(fold(n) for n in (name, name_ar or "", *aliases, pcode) if n) + "|"


# ---- cities --------------------------------------------------------------------------

CITY_FIELDS = ("name", "name_ar", "aliases", "pcode", "adm1_pcode", "adm1_name", "latitude", "longitude", "population")


def _clean_aliases(aliases: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for alias in aliases:
        alias = " ".join(alias.split())
        if alias and fold(alias) not in seen:
            seen[fold(alias)] = alias
    return list(seen.values())


def _ensure_unique_pcode(session: Session, pcode: str, *, exclude: uuid.UUID | None = None) -> None:
    stmt = select(col(City.id)).where(col(City.pcode) == pcode)
    if exclude is not None:
        stmt = stmt.where(col(City.id) != exclude)
    if session.execute(stmt).first() is not None:
        raise Conflict(f"A city with P-code {pcode} exists already.")


def create_city(*, session: Session, actor: Principal | Actor, data: dict[str, Any]) -> City:
    audit_actor = acting(actor, Action.edit_cities)
    _ensure_unique_pcode(session, data["pcode"])
    aliases = _clean_aliases(data.get("aliases") or [])
    city = City(
        name=" ".join(data["name"].split()),
        name_ar=(data.get("name_ar") or None),
        aliases=aliases,
        pcode=data["pcode"],
        adm1_pcode=data["adm1_pcode"],
        adm1_name=" ".join(data["adm1_name"].split()),
        latitude=data["latitude"],
        longitude=data["longitude"],
        population=data.get("population"),
        search_text=city_search_text(data["name"], data.get("name_ar"), aliases, data["pcode"]),
    )
    session.add(city)
    session.flush()
    record_event(
        session,
        actor=audit_actor,
        entity_type="city",
        entity_id=city.id,
        action="created",
        changes={f: getattr(city, f) for f in CITY_FIELDS},
    )
    return city


def get_city(*, session: Session, actor: Principal, city_id: uuid.UUID) -> City:
    require(actor, Action.read_cities)
    city = session.get(City, city_id)
    if city is None:
        raise NotFound("No such city.")
    return city


# What every city has: an edit may change these, never remove them.
KEPT_ON_EDIT = ("name", "pcode", "adm1_pcode", "adm1_name", "latitude", "longitude", "aliases")


def update_city(*, session: Session, actor: Principal, city_id: uuid.UUID, changes: dict[str, Any]) -> City:
    require(actor, Action.edit_cities)
    city = get_city(session=session, actor=actor, city_id=city_id)
    if "aliases" in changes and changes["aliases"] is not None:
        changes["aliases"] = _clean_aliases(changes["aliases"])
    refuse_removal(changes, KEPT_ON_EDIT)
    applied: dict[str, Any] = {}
    for field in CITY_FIELDS:
        if field not in changes:
            continue
        value = changes[field]
        if isinstance(value, str) and field != "pcode":
            value = " ".join(value.split()) or None
        if value != getattr(city, field):
            if field == "pcode":
                _ensure_unique_pcode(session, value, exclude=city.id)
            applied[field] = {"from": getattr(city, field), "to": value}
            setattr(city, field, value)
    if applied:
        city.search_text = city_search_text(city.name, city.name_ar, city.aliases, city.pcode)
        city.updated_at = utcnow()
        session.add(city)
        record_event(
            session, actor=Actor.of(actor), entity_type="city", entity_id=city.id, action="updated", changes=applied
        )
    return city


def not_corrected() -> ColumnElement[bool]:
    correction = aliased(Designation)
    return ~exists().where(col(correction.corrects_id) == col(Designation.id))


def _ranked_current(as_of: datetime, city_ids: list[uuid.UUID] | None = None) -> Subquery:
    """Each city's designation at ``as_of``: the latest effective one not corrected."""
    rank = func.row_number().over(
        partition_by=col(Designation.city_id),
        order_by=(
            col(Designation.effective_from).desc(),
            col(Designation.recorded_at).desc(),
            col(Designation.id).desc(),
        ),
    )
    stmt = select(
        col(Designation.id).label("designation_id"),
        col(Designation.city_id),
        col(Designation.status),
        rank.label("rank"),
    ).where(col(Designation.effective_from) <= as_of, not_corrected())
    if city_ids is not None:
        stmt = stmt.where(col(Designation.city_id).in_(city_ids))
    return stmt.subquery()


def list_cities(
    *,
    session: Session,
    actor: Principal,
    page: PageRequest,
    q: str | None = None,
    adm1_pcode: str | None = None,
    designation: DesignationStatus | None = None,
) -> tuple[list[City], bool]:
    """Cities by name (then id), so pages read alphabetically."""
    require(actor, Action.read_cities)
    stmt = select(City)
    if q:
        needle = fold(q)
        if not needle:
            raise InvalidInput.field("query.q", "Search for at least one letter or digit.", "invalid")
        stmt = stmt.where(col(City.search_text).contains(needle, autoescape=True))
    if adm1_pcode:
        stmt = stmt.where(col(City.adm1_pcode) == adm1_pcode)
    if designation is not None:
        current = _ranked_current(utcnow())
        stmt = stmt.join(current, and_(current.c.city_id == col(City.id), current.c.rank == 1)).where(
            current.c.status == designation.value
        )
    if page.after is not None:
        stmt = stmt.where(tuple_(col(City.name), col(City.id)) > tuple_(*page.after))
    rows = list(session.execute(stmt.order_by(col(City.name), col(City.id)).limit(page.limit + 1)).scalars())
    return rows[: page.limit], len(rows) > page.limit


def current_designations(session: Session, city_ids: list[uuid.UUID], as_of: datetime) -> dict[uuid.UUID, Designation]:
    if not city_ids:
        return {}
    current = _ranked_current(as_of, city_ids)
    rows = session.execute(
        select(Designation).join(current, and_(current.c.designation_id == col(Designation.id), current.c.rank == 1))
    ).scalars()
    return {d.city_id: d for d in rows}


# ---- designations --------------------------------------------------------------------


def record_designation(
    *,
    session: Session,
    actor: Principal | Actor,
    city_id: uuid.UUID,
    data: dict[str, Any],
    decided_by_id: uuid.UUID | None = None,
) -> Designation:
    """``decided_by_id`` defaults to the calling user; the command line names one."""
    audit_actor = acting(actor, Action.set_designation)
    city = session.get(City, city_id)
    if city is None:
        raise NotFound("No such city.")
    if isinstance(actor, Principal) and actor.is_user:
        decided_by_id = actor.id
    status = DesignationStatus(data["status"])
    besieged_by = (data.get("besieged_by") or "").strip() or None
    if status == DesignationStatus.besieged and not besieged_by:
        raise InvalidInput.field("body.besieged_by", "A besieged designation must say besieged by whom.", "missing")
    if status != DesignationStatus.besieged and besieged_by:
        raise InvalidInput.field("body.besieged_by", "Only a besieged designation names who besieges.", "not_allowed")
    corrects_id = data.get("corrects_id")
    if corrects_id is not None:
        corrected = session.get(Designation, corrects_id)
        if corrected is None or corrected.city_id != city.id:
            raise InvalidInput.field(
                "body.corrects_id", "No designation of this city has this id.", "unknown_reference"
            )
        correction = session.execute(
            select(col(Designation.id)).where(col(Designation.corrects_id) == corrected.id)
        ).scalar()
        if correction is not None:
            raise Conflict(
                f"That designation was corrected already (by {correction}); correct the correction instead.",
                extra={"corrected_by": str(correction)},
            )
    now = utcnow()
    before = current_designations(session, [city.id], now).get(city.id)
    designation = Designation(
        city_id=city.id,
        status=status.value,
        besieged_by=besieged_by,
        severity=data["severity"],
        effective_from=data["effective_from"],
        reason=data["reason"].strip(),
        source=(data.get("source") or "").strip() or None,
        decided_by_id=decided_by_id,
        corrects_id=corrects_id,
        recorded_at=now,
    )
    session.add(designation)
    session.flush()
    after = current_designations(session, [city.id], now).get(city.id)
    record_event(
        session,
        actor=audit_actor,
        entity_type="city",
        entity_id=city.id,
        action="designation_corrected" if corrects_id else "designation_recorded",
        from_state=before.status if before else None,
        to_state=after.status if after else None,
        changes={
            "designation_id": designation.id,
            "status": designation.status,
            "besieged_by": designation.besieged_by,
            "severity": designation.severity,
            "effective_from": designation.effective_from,
            "source": designation.source,
            "corrects_id": corrects_id,
        },
        reason=designation.reason,
    )
    return designation


@dataclass(frozen=True)
class DesignationEntry:
    designation: Designation
    corrected_by_id: uuid.UUID | None


def list_designations(
    *, session: Session, actor: Principal, city_id: uuid.UUID, page: PageRequest
) -> tuple[list[DesignationEntry], bool]:
    """The whole history, newest effective first, corrected ones included and marked."""
    city = get_city(session=session, actor=actor, city_id=city_id)
    correction = aliased(Designation)
    stmt = (
        select(Designation, col(correction.id))
        .outerjoin(correction, col(correction.corrects_id) == col(Designation.id))
        .where(col(Designation.city_id) == city.id)
    )
    if page.after is not None:
        effective_from, designation_id = page.after
        stmt = stmt.where(
            tuple_(col(Designation.effective_from), col(Designation.id)) < tuple_(effective_from, designation_id)
        )
    rows = session.execute(
        stmt.order_by(col(Designation.effective_from).desc(), col(Designation.id).desc()).limit(page.limit + 1)
    ).all()
    entries = [DesignationEntry(designation=d, corrected_by_id=c) for d, c in rows]
    return entries[: page.limit], len(entries) > page.limit


def city_choices(session: Session) -> list[AnyRow]:
    """(id, name, name_ar) of every city by name: a form's list to choose from."""
    return list(
        session.execute(
            select(col(City.id), col(City.name), col(City.name_ar)).order_by(col(City.name), col(City.id))
        ).all()
    )
