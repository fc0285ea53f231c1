"""Pieces every service uses: the policy guard and keyset pages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Executable, Result, Row, Select
from sqlmodel import Session

from auth.policy import Action, can
from auth.principal import Principal
from workflow.errors import Forbidden, InvalidInput, NotFound

# A row and a statement of any columns (SQLAlchemy types them by their columns' types).
AnyRow = Row[*tuple[Any, ...]]
AnySelect = Select[*tuple[Any, ...]]


def require(principal: Principal, action: Action, thing: Any = None) -> None:
    decision = can(principal, action, thing)
    if not decision:
        if decision.hide:
            raise NotFound("Not found.")
        raise Forbidden(decision.reason)


@dataclass(frozen=True)
class PageRequest:
    limit: int
    after: Any = None  # the last key of the previous page


def read_rows(session: Session, stmt: Executable, values: dict[str, Any] | None = None) -> Result[*tuple[Any, ...]]:
    """A read as plain rows, executed on the unit of work's connection: the ORM's execution (its
    compile state, its row loading) was a fifth of a list of 50's CPU, for rows it would only pass on.
    Flushes first, as ``Session.execute`` would, so the rows see this unit of work's changes."""
    session.flush()
    return session.connection().execute(stmt, values)


def keyset_page(session: Session, stmt: AnySelect, key: Any, page: PageRequest) -> tuple[list[Any], bool]:
    """A page ordered by a unique, time-ordered key: the 1000th page costs what the first does."""
    if page.after is not None:
        stmt = stmt.where(key > page.after)
    rows = list(session.execute(stmt.order_by(key).limit(page.limit + 1)).scalars())
    return rows[: page.limit], len(rows) > page.limit


def refuse_removal(changes: dict[str, Any], required: tuple[str, ...]) -> None:
    """An edit's null removes a value (JSON merge patch); a value every record needs cannot be
    removed, on any resource alike, so a 422 names it and nothing is written."""
    for name in required:
        if name in changes and changes[name] is None:
            raise InvalidInput.field(f"body.{name}", f"{name} cannot be removed.", "missing")


def required_reason(reason: str | None, field: str = "body.reason") -> str:
    """Denials, cancellations, suspensions and the like say why."""
    if reason is None or not reason.strip():
        raise InvalidInput.field(field, "Say why.", "missing")
    return reason.strip()
