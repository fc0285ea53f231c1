"""The audit trail: one event per write, appended in the write's own transaction, as it commits.

Events are chained: ``hash = sha256(prev_hash + canonical_json(event))``. Appends are
serialised (PostgreSQL: a transaction-scoped advisory lock, taken just before the commit;
SQLite: the write transaction's own lock), so ids are gapless and in commit order.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any, cast

from sqlalchemy import event as orm_event
from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session as SessionBase
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session, col

from aidaccess.clock import day_start, utcnow
from aidaccess.context import current_request_id
from auth.policy import CONVOY_ENTITY_TYPES, Action, reads_every_audit_detail
from auth.principal import Principal
from db.models import AuditEvent, AuditSeal, table_of
from workflow import events, outbox
from workflow.common import PageRequest, keyset_page, require

GENESIS_HASH = "0" * 64

# The audit key (settings.audit_signing_key), set once per process by whoever opens the database for
# writes (services.build_services, the command line): events are sealed as they are appended.
_SEAL_KEY: bytes | None = None


def set_seal_key(key: str) -> None:
    global _SEAL_KEY
    if not key:
        raise ValueError("the audit key is empty")
    _SEAL_KEY = key.encode()
    events.set_name_key(key)  # the names events are given out by (the feed, webhooks)


def _seal_key() -> bytes:
    if _SEAL_KEY is None:
        raise RuntimeError("no audit key: call workflow.audit.set_seal_key before writing")
    return _SEAL_KEY


def seal(event_id: int, event_hash_: str) -> str:
    """HMAC-SHA256 under the audit key of the event's id and hash."""
    return hmac.new(_seal_key(), f"{event_id}:{event_hash_}".encode(), hashlib.sha256).hexdigest()


# Any constant will do; it only has to be the same for every writer.
_AUDIT_LOCK_KEY = 0x61696461  # "aida"


@dataclass(frozen=True, slots=True)
class Actor:
    type: str  # "user", "service_account" or "system"
    id: str | None
    label: str | None
    organization_id: str | None

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        return cls(
            type=principal.kind.value,
            id=str(principal.id),
            label=principal.label,
            organization_id=str(principal.organization_id),
        )

    @classmethod
    def system(cls, label: str) -> Actor:
        return cls(type="system", id=None, label=label, organization_id=None)


def acting(actor: Principal | Actor, action: Action) -> Actor:
    """Who to record: operators at the command line act as the system; API callers are
    checked by policy first."""
    if isinstance(actor, Actor):
        return actor
    require(actor, action)
    return Actor.of(actor)


def jsonable(value: Any) -> Any:
    """Plain JSON values, so what is hashed is exactly what is stored and read back."""
    if isinstance(value, datetime):
        return _timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    return value


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def canonical_json(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as written: the columns of ``AuditEvent`` without an ORM instance (building
    one, and flushing it through the unit of work, was a fifth of a create's CPU)."""

    id: int
    occurred_at: datetime
    actor_type: str
    actor_id: str | None
    actor_label: str | None
    organization_id: str | None
    entity_type: str
    entity_id: str
    action: str
    from_state: str | None
    to_state: str | None
    changes: dict[str, Any]
    reason: str | None
    request_id: str | None
    prev_hash: str
    hash: str = ""


# The table's columns (a test holds the two together); the chain hashes all but the hash itself.
_COLUMNS = tuple(f.name for f in fields(RecordedEvent))
_HASHED = _COLUMNS[:-1]


def _hashed_fields(event: AuditEvent | RecordedEvent) -> dict[str, Any]:
    values = {name: getattr(event, name) for name in _HASHED}
    values["occurred_at"] = _timestamp(event.occurred_at)
    return values


def event_hash(event: AuditEvent | RecordedEvent) -> str:
    material = event.prev_hash + canonical_json(_hashed_fields(event))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


# Built once: a statement object keeps its cache key, which SQLAlchemy otherwise derives again on
# every execution of a statement built anew.
_CHAIN_HEAD = select(col(AuditEvent.id), col(AuditEvent.hash)).order_by(col(AuditEvent.id).desc()).limit(1)
_INSERT_EVENT = insert(table_of(AuditEvent))
_INSERT_SEAL = insert(table_of(AuditSeal))


def record_event(
    session: Session,
    *,
    actor: Actor,
    entity_type: str,
    entity_id: Any,
    action: str,
    from_state: str | None = None,
    to_state: str | None = None,
    changes: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> None:
    """One event of the caller's transaction, appended to the chain when it commits (never committed here).

    The append (``_append_pending``, on the session's ``before_commit``) takes the chain's lock: taken
    here, it was held for the rest of the unit of work too (the response built, each statement's
    round trip and the GIL waited for after it), and every other write of the service queued for it.
    """
    if session.in_nested_transaction():
        # A savepoint rolled back would leave its events pending: events belong to the whole transaction.
        raise RuntimeError("audit events are recorded in a session's outermost transaction")
    # What the event records reaches the database now, so a failing write fails here, as before its event.
    session.flush()
    session.connection()  # the transaction the event belongs to has begun
    transaction = session.get_transaction()
    entry = session.info.get(_PENDING)
    if entry is None or entry[0] is not transaction:  # none yet, or a rolled-back transaction's
        entry = session.info[_PENDING] = (transaction, list[dict[str, Any]]())
    entry[1].append(
        {
            "actor_type": actor.type,
            "actor_id": actor.id,
            "actor_label": actor.label,
            "organization_id": actor.organization_id,
            "entity_type": entity_type,
            "entity_id": str(entity_id),
            "action": action,
            "from_state": from_state,
            "to_state": to_state,
            "changes": jsonable(dict(changes or {})),
            "reason": reason,
            "request_id": current_request_id(),
        }
    )


_PENDING = "aidaccess.audit.pending"  # session.info: (the transaction, its events not yet appended)


def pending_events(session: Session) -> int:
    """Events recorded in the session's transaction, to be appended when it commits."""
    entry = session.info.get(_PENDING)
    return len(entry[1]) if entry is not None and entry[0] is session.get_transaction() else 0


@orm_event.listens_for(SessionBase, "before_commit")
def _append_pending(session: SessionBase) -> None:
    """The transaction's events, appended to the chain as its last statements: the lock (PostgreSQL),
    the chain's head, the inserts, then the commit; on PostgreSQL the first three are one statement
    (``_append_in_postgresql``). Webhooks' outbox rows go in with them (and are flushed by the commit)."""
    entry = session.info.pop(_PENDING, None)
    if entry is None or entry[0] is not session.get_transaction() or not entry[1]:
        return
    kinds = [(values["entity_type"], values["action"]) for values in entry[1]]
    # Pending events are recorded only by record_event, whose session is SQLModel's.
    session = cast(Session, session)
    connection = session.connection()
    # Hash what the database will give back: microsecond precision, UTC.
    occurred_at = utcnow().astimezone(UTC)
    if connection.dialect.name == "postgresql":
        # The first append's statement reads the live subscriptions too, a round trip fewer: in the
        # snapshot it takes as it starts, before the lock, as a statement of their own before it did.
        wanted = outbox.subscribable(kinds)
        live: list[tuple[uuid.UUID, list[str]]] = []
        appended: list[RecordedEvent] = []
        for values in entry[1]:
            recorded, live_json = _append_in_postgresql(
                connection, occurred_at, values, with_live=wanted and not appended
            )
            if live_json is not None:
                live = outbox.live_subscriptions_of(live_json)
            appended.append(recorded)
    else:
        # Before the chain's head is read: nothing in it depends on the chain.
        live = outbox.live_subscriptions(session, kinds)
        last = connection.execute(_CHAIN_HEAD).first()
        last_id, last_hash = (last.id, last.hash) if last else (0, GENESIS_HASH)
        appended = []
        for values in entry[1]:
            recorded = RecordedEvent(id=last_id + 1, occurred_at=occurred_at, prev_hash=last_hash, **values)
            recorded = replace(recorded, hash=event_hash(recorded))
            appended.append(recorded)
            last_id, last_hash = recorded.id, recorded.hash
        rows = [{name: getattr(recorded, name) for name in _COLUMNS} for recorded in appended]
        connection.execute(_INSERT_EVENT, rows[0] if len(rows) == 1 else rows)
    seals = [{"event_id": recorded.id, "mac": seal(recorded.id, recorded.hash)} for recorded in appended]
    connection.execute(_INSERT_SEAL, seals[0] if len(seals) == 1 else seals)
    for recorded in appended:
        outbox.enqueue(session, recorded, live)


# PostgreSQL: lock, head, hash and insert in one round trip (alembic revision 0008); with the live
# webhook subscriptions (outbox.LIVE_SUBSCRIPTIONS_JSON) beside them, or NULL.
_APPEND_SQL = (
    "SELECT appended_id, appended_prev_hash, appended_hash, {live} AS live FROM audit_event_append(:lock, :prefix, "
    ":middle, :suffix, :occurred_at, :actor_type, :actor_id, :actor_label, :organization_id, :entity_type, :entity_id, "
    ":action, :from_state, :to_state, :changes, :reason, :request_id)"
)
_APPEND = text(_APPEND_SQL.format(live="NULL::json"))


_APPEND_WITH_LIVE = text(_APPEND_SQL.format(live=outbox.LIVE_SUBSCRIPTIONS_JSON))


def _append_in_postgresql(
    connection: Any,
    occurred_at: datetime,
    values: dict[str, Any],
    *,
    with_live: bool = False,
) -> tuple[RecordedEvent, list[list[Any]] | None]:
    """The event as appended, and the live subscriptions' JSON where ``with_live`` asks for it (else None)."""
    draft = RecordedEvent(id=0, occurred_at=occurred_at, prev_hash="", **values)
    prefix, middle, suffix = hashed_pieces(draft)
    row = connection.execute(
        _APPEND_WITH_LIVE if with_live else _APPEND,
        {
            **values,
            "lock": _AUDIT_LOCK_KEY,
            "prefix": prefix,
            "middle": middle,
            "suffix": suffix,
            "occurred_at": occurred_at,
            "changes": json.dumps(values["changes"]),
        },
    ).one()
    recorded = replace(draft, id=row.appended_id, prev_hash=row.appended_prev_hash, hash=row.appended_hash)
    if event_hash(recorded) != recorded.hash:  # never written: the transaction rolls back
        raise RuntimeError(f"the database hashed audit event {recorded.id} otherwise than the chain is verified")
    return recorded, row.live


def hashed_pieces(event: RecordedEvent) -> tuple[str, str, str]:
    """The event's canonical JSON in three pieces, around the values of ``id`` and ``prev_hash``:
    ``prev_hash + prefix + str(id) + middle + prev_hash + suffix`` is what ``event_hash`` hashes."""
    values = _hashed_fields(event)
    names = sorted(values)
    members = [canonical_json({name: values[name]})[1:-1] for name in names]  # '"name":value'
    at_id, at_prev = names.index("id"), names.index("prev_hash")
    prefix = "{" + "".join(f"{m}," for m in members[:at_id]) + '"id":'
    middle = "".join(f",{m}" for m in members[at_id + 1 : at_prev]) + ',"prev_hash":"'
    suffix = '"' + "".join(f",{m}" for m in members[at_prev + 1 :]) + "}"
    return prefix, middle, suffix


@orm_event.listens_for(SessionBase, "after_transaction_end")
def _forget_pending(session: SessionBase, transaction: SessionTransaction) -> None:
    """A transaction rolled back or closed: its events go with it."""
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


@dataclass(frozen=True)
class ChainReport:
    checked: int
    broken_at: int | None
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def _iter_events(session: Session, batch: int = 1000) -> Iterator[tuple[AuditEvent, str | None]]:
    """Every event in order, with its seal (None: none)."""
    after = 0
    while True:
        rows = session.execute(
            select(AuditEvent, col(AuditSeal.mac))
            .outerjoin(AuditSeal, col(AuditSeal.event_id) == col(AuditEvent.id))
            .where(col(AuditEvent.id) > after)
            .order_by(col(AuditEvent.id))
            .limit(batch)
        ).all()
        if not rows:
            return
        yield from ((row[0], row[1]) for row in rows)
        after = rows[-1][0].id
        session.expunge_all()


def verify_chain(session: Session, *, sealed: bool = True) -> ChainReport:
    """Walk the chain from the first event; name the first link that does not hold. ``sealed``:
    every event's seal must be its own under the audit key too."""
    expected_prev = GENESIS_HASH
    expected_id = 1
    checked = 0
    for event, mac in _iter_events(session):
        if event.id != expected_id:
            return ChainReport(checked, expected_id, f"event {expected_id} is missing (next is {event.id})")
        if event.prev_hash != expected_prev:
            return ChainReport(checked, event.id, f"event {event.id} does not follow event {event.id - 1}")
        if event_hash(event) != event.hash:
            return ChainReport(checked, event.id, f"event {event.id} was altered after it was written")
        if sealed:
            if mac is None:
                return ChainReport(checked, event.id, f"event {event.id} carries no seal")
            if not hmac.compare_digest(mac, seal(event.id, event.hash)):
                return ChainReport(
                    checked,
                    event.id,
                    f"event {event.id}'s seal does not match: the trail was rewritten from it on "
                    "by someone without the audit key, or the key is not the one it was sealed with",
                )
        expected_prev = event.hash
        expected_id += 1
        checked += 1
    return ChainReport(checked, None, None)


class ChainBroken(RuntimeError):
    """The trail does not verify, so it is not sealed."""


def seal_existing_events(session: Session) -> int:
    """Seal a trail written before seals (alembic 0011), once its chain verifies."""
    if _SEAL_KEY is None:
        from aidaccess.settings import get_settings

        set_seal_key(get_settings().audit_signing_key())
    report = verify_chain(session, sealed=False)
    if not report.ok:
        raise ChainBroken(f"the audit chain is broken at event {report.broken_at} ({report.problem}): not sealing it")
    sealed = 0
    for event, mac in _iter_events(session):
        if mac is None:
            session.connection().execute(_INSERT_SEAL, {"event_id": event.id, "mac": seal(event.id, event.hash)})
            sealed += 1
    return sealed


# ---- checkpoints: the trail's length and head, signed, kept elsewhere ------------------------

_CHECKPOINT_KIND = "aidaccess audit checkpoint"


def _signature(fields_: Mapping[str, Any]) -> str:
    return hmac.new(_seal_key(), canonical_json(fields_).encode(), hashlib.sha256).hexdigest()


def make_checkpoint(session: Session) -> dict[str, Any]:
    """The trail's event count and head hash, at a time, signed with the audit key. Kept somewhere the
    database's writers cannot reach, it shows a trail later cut short or rewritten (like Certificate
    Transparency's signed tree heads and CloudTrail's digest files)."""
    head = session.execute(
        select(col(AuditEvent.id), col(AuditEvent.hash)).order_by(col(AuditEvent.id).desc()).limit(1)
    ).first()
    fields_ = {
        "kind": _CHECKPOINT_KIND,
        "events": head.id if head else 0,
        "head_hash": head.hash if head else GENESIS_HASH,
        "made_at": _timestamp(utcnow()),
    }
    return {**fields_, "signature": _signature(fields_)}


def check_checkpoint(session: Session, checkpoint: Mapping[str, Any]) -> str | None:
    """What the trail lacks or changed against a checkpoint, or None when it holds it."""
    fields_ = {name: checkpoint.get(name) for name in ("kind", "events", "head_hash", "made_at")}
    if (
        fields_["kind"] != _CHECKPOINT_KIND
        or not isinstance(fields_["events"], int)
        or not isinstance(checkpoint.get("signature"), str)
    ):
        return "this is not an audit checkpoint"
    if not hmac.compare_digest(checkpoint["signature"], _signature(fields_)):
        return "the checkpoint's signature does not verify: it was edited, or made with another audit key"
    count, made_at = fields_["events"], fields_["made_at"]
    if count == 0:
        return None
    last = session.execute(select(func.max(col(AuditEvent.id)))).scalar_one() or 0
    if last < count:
        return (
            f"the trail ends at event {last}, but the checkpoint of {made_at} counted {count}: "
            f"events {last + 1} to {count} are missing"
        )
    then = session.execute(select(col(AuditEvent.hash)).where(col(AuditEvent.id) == count)).scalar_one_or_none()
    if then != fields_["head_hash"]:
        return f"event {count} is not the one the checkpoint of {made_at} saw: the trail was rewritten up to it"
    return None


# An audit event as one caller may see it (auth.policy.reads_every_audit_detail), as the columns of
# the trail: in full; without its place in the trail (id and hashes None); or, for an event on a
# convoy, that it happened, on which day (the start of the taskforce's day) and by which
# organization. "position" is the trail's id, which a page's cursor is made of, never shown as it is.
AuditView = dict[str, Any]


def _full(event: AuditEvent) -> AuditView:
    return {**{name: getattr(event, name) for name in _COLUMNS}, "position": event.id}


def _unplaced(event: AuditEvent) -> AuditView:
    return {**_full(event), "id": None, "prev_hash": None, "hash": None}


def _convoy_event(event: AuditEvent) -> AuditView:
    return {
        **dict.fromkeys(_COLUMNS),
        "occurred_at": day_start(event.occurred_at),
        "organization_id": event.organization_id,
        "entity_type": event.entity_type,
        "entity_id": event.entity_id,
        "action": event.action,
        "changes": {},
        "position": event.id,
    }


def viewed(actor: Principal, events: list[AuditEvent]) -> list[AuditView]:
    """Events of a thing the caller may read (a request's history), as it may see them: in full, or
    without their places in the trail."""
    view = _full if reads_every_audit_detail(actor) else _unplaced
    return [view(event) for event in events]


def list_audit_events(
    session: Session,
    *,
    actor: Principal,
    page: PageRequest,
    entity_type: str | None = None,
    entity_id: str | None = None,
    occurred_after: datetime | None = None,
    occurred_before: datetime | None = None,
) -> tuple[list[AuditView], bool]:
    require(actor, Action.read_audit)
    full = reads_every_audit_detail(actor)
    convoys = not full and entity_type in CONVOY_ENTITY_TYPES
    if convoys:
        # Their own list, by the day: time bounds are taken to the start of their days.
        occurred_after = day_start(occurred_after) if occurred_after is not None else None
        occurred_before = day_start(occurred_before) if occurred_before is not None else None
    stmt = select(AuditEvent)
    if occurred_after is not None:
        stmt = stmt.where(col(AuditEvent.occurred_at) > occurred_after)
    if occurred_before is not None:
        stmt = stmt.where(col(AuditEvent.occurred_at) < occurred_before)
    if entity_type is not None:
        stmt = stmt.where(col(AuditEvent.entity_type) == entity_type)
    elif not full:
        stmt = stmt.where(col(AuditEvent.entity_type).not_in(CONVOY_ENTITY_TYPES))
    if entity_id is not None:
        stmt = stmt.where(col(AuditEvent.entity_id) == entity_id)
    events, more = keyset_page(session, stmt, col(AuditEvent.id), page)
    view = _full if full else _convoy_event if convoys else _unplaced
    return [view(event) for event in events], more
