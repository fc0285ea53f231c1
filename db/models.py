"""The tables. Every change here comes with an Alembic revision (a test checks)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import declared_attr
from sqlmodel import Field, SQLModel

from aidaccess.clock import utcnow
from db.types import UTCDateTime, uuid7

JSONType = JSON().with_variant(JSONB(), "postgresql")

# Stable constraint names, so migrations can refer to them on both engines.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def table_of(model: type[SQLModel]) -> Table:
    """A table model's Core table, typed (SQLModel gives ``__table__`` no type)."""
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


def _id() -> uuid.UUID:
    return uuid7()


class Organization(SQLModel, table=True):
    __tablename__ = "organization"

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    name: str = Field(sa_type=String(200))
    # Lower-cased name: two organizations are not told apart by case alone.
    name_key: str = Field(sa_type=String(200), unique=True)
    kind: str = Field(sa_type=String(32))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class User(SQLModel, table=True):
    __tablename__ = "user_account"

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    email: str = Field(sa_type=String(320), unique=True)
    full_name: str = Field(sa_type=String(200))
    organization_id: uuid.UUID = Field(foreign_key="organization.id", index=True)
    role: str = Field(sa_type=String(32))
    active: bool = Field(default=True, sa_type=Boolean)
    password_hash: str = Field(sa_type=String(255))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Set when the password is reset or the account deactivated: long-lived tokens issued before
    # (calendar subscriptions) stop working, even once the account is active again.
    tokens_valid_after: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ServiceAccount(SQLModel, table=True):
    __tablename__ = "service_account"

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    name: str = Field(sa_type=String(200))
    client_id: str = Field(sa_type=String(64), unique=True)
    secret_hash: str = Field(sa_type=String(255))
    organization_id: uuid.UUID = Field(foreign_key="organization.id", index=True)
    scopes: list[str] = Field(default_factory=list, sa_type=JSONType)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Deleted accounts are kept (the audit trail names them) but can no longer act.
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AuthSession(SQLModel, table=True):
    """A login: the family of refresh tokens rotated from one password grant."""

    __tablename__ = "auth_session"

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="user_account.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_reason: str | None = Field(default=None, sa_type=String(64))


class RefreshToken(SQLModel, table=True):
    __tablename__ = "refresh_token"

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    session_id: uuid.UUID = Field(foreign_key="auth_session.id", index=True)
    # SHA-256 of the token: it has 256 random bits, so no slow hash is needed.
    token_hash: str = Field(sa_type=String(64), unique=True)
    issued_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RevokedToken(SQLModel, table=True):
    """Access tokens revoked before they expire (by ``jti``)."""

    __tablename__ = "revoked_token"

    jti: str = Field(sa_type=String(64), primary_key=True)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class FeedToken(SQLModel, table=True):
    """A read-only token for the access snapshot, carried in its URL (``?token=``), for tools that
    fetch a URL and set no header (HXL Proxy, Power BI, QGIS, Excel). Its owner lists and revokes it."""

    __tablename__ = "feed_token"

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="user_account.id", index=True)
    name: str = Field(sa_type=String(200))
    # SHA-256 of the token: it has 256 random bits, so no slow hash is needed.
    token_hash: str = Field(sa_type=String(64), unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class LoginAttempt(SQLModel, table=True):
    __tablename__ = "login_attempt"
    __table_args__ = (
        Index("ix_login_attempt_account_key_attempted_at", "account_key", "attempted_at"),
        Index("ix_login_attempt_client_ip_attempted_at", "client_ip", "attempted_at"),
        Index("ix_login_attempt_attempted_at", "attempted_at"),
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    # The normalised email asked for, known or not, so throttling cannot tell them apart.
    account_key: str = Field(sa_type=String(320))
    succeeded: bool = Field(sa_type=Boolean)
    attempted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    client_ip: str | None = Field(default=None, sa_type=String(64))


# Access request events that can change an access picture: those entering or leaving a
# state in which a picture shows the request (an approved, dispatched or completed convoy).
# Drafts, submissions and reviews never show, so they leave the pictures' ETags alone.
CONVOY_STATES = ("approved", "dispatched", "delivered", "partially_delivered", "turned_back")
_STATES_SQL = ", ".join(f"'{state}'" for state in CONVOY_STATES)
CONVOY_EVENT_CONDITION = (
    f"entity_type = 'access_request' AND (to_state IN ({_STATES_SQL}) OR from_state IN ({_STATES_SQL}))"
)


class AuditEvent(SQLModel, table=True):
    """Appended, never updated. ``hash`` covers the previous event's hash and this event."""

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_entity", "entity_type", "entity_id", "id"),
        # The newest event of a kind in one index probe: the version behind ETags.
        Index("ix_audit_event_type_id", "entity_type", "id"),
        # The newest convoy event in one probe (partial: the query repeats the condition verbatim).
        Index(
            "ix_audit_event_convoy",
            "id",
            sqlite_where=text(CONVOY_EVENT_CONDITION),
            postgresql_where=text(CONVOY_EVENT_CONDITION),
        ),
    )

    # Assigned as last id + 1 under the append lock: gapless, in commit order.
    id: int = Field(
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False)
    )
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    actor_type: str = Field(sa_type=String(32))
    actor_id: str | None = Field(default=None, sa_type=String(64))
    actor_label: str | None = Field(default=None, sa_type=String(320))
    organization_id: str | None = Field(default=None, sa_type=String(64))
    entity_type: str = Field(sa_type=String(64))
    entity_id: str = Field(sa_type=String(64))
    action: str = Field(sa_type=String(64))
    from_state: str | None = Field(default=None, sa_type=String(64))
    to_state: str | None = Field(default=None, sa_type=String(64))
    changes: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    reason: str | None = Field(default=None, sa_type=Text)
    request_id: str | None = Field(default=None, sa_type=String(128))
    prev_hash: str = Field(sa_type=String(64))
    hash: str = Field(sa_type=String(64), unique=True)


class AuditSeal(SQLModel, table=True):
    """An event's seal: HMAC-SHA256, under the audit key kept outside the database, of the event's id
    and hash (workflow.audit.seal). The hash covers the previous event's, so a seal vouches for the
    trail up to its event; rewriting any event needs the key. Appended with its event, never updated."""

    __tablename__ = "audit_seal"

    event_id: int = Field(
        sa_column=Column(
            BigInteger().with_variant(Integer, "sqlite"),
            ForeignKey("audit_event.id"),
            primary_key=True,
            autoincrement=False,
        )
    )
    mac: str = Field(sa_type=String(64))


class City(SQLModel, table=True):
    __tablename__ = "city"

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    name: str = Field(sa_type=String(200))
    name_ar: str | None = Field(default=None, sa_type=String(200))
    aliases: list[str] = Field(default_factory=list, sa_type=JSONType)
    pcode: str = Field(sa_type=String(16), unique=True)
    adm1_pcode: str = Field(sa_type=String(8), index=True)
    adm1_name: str = Field(sa_type=String(200))
    latitude: float = Field(sa_type=Float)
    longitude: float = Field(sa_type=Float)
    population: int | None = Field(default=None, sa_type=Integer)
    # Names, aliases and P-code folded for search in either script (see workflow.cities).
    search_text: str = Field(default="", sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Designation(SQLModel, table=True):
    """A city's access status from a moment on. Appended, never edited: a correction is a
    new designation naming the one it corrects, which then no longer counts."""

    __tablename__ = "designation"
    __table_args__ = (
        Index("ix_designation_city_effective", "city_id", "effective_from"),
        # The latest dated change at a moment, one probe: part of the access picture's version.
        Index("ix_designation_effective_from", "effective_from"),
    )

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    city_id: uuid.UUID = Field(foreign_key="city.id")
    status: str = Field(sa_type=String(32))
    besieged_by: str | None = Field(default=None, sa_type=String(200))
    severity: int = Field(sa_type=Integer)
    effective_from: datetime = Field(sa_type=UTCDateTime)
    reason: str = Field(sa_type=Text)
    source: str | None = Field(default=None, sa_type=Text)
    decided_by_id: uuid.UUID | None = Field(default=None, foreign_key="user_account.id")
    # A designation is corrected at most once; a correction of a correction names the latter.
    corrects_id: uuid.UUID | None = Field(default=None, foreign_key="designation.id", unique=True)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# A request's time between approval and departure, as a range (empty when it was approved at or
# after its planned departure, so it contains no moment). An upcoming convoy at a moment is a
# request whose range contains it; a GiST index over this range finds those from any moment in
# history, where the departure index walks every request departing after the moment.
# PostgreSQL only (SQLite has no range type); the query repeats this text verbatim.
IN_FLIGHT_RANGE = "tstzrange(approved_at, greatest(planned_departure, approved_at))"


class AccessRequest(SQLModel, table=True):
    """A convoy's request for access to a city, from draft to its outcome."""

    __tablename__ = "access_request"
    __table_args__ = (
        Index("ix_access_request_org_id", "organization_id", "id"),
        Index("ix_access_request_departure", "planned_departure", "id"),
        Index("ix_access_request_status_due", "status", "review_due_at"),
        Index("ix_access_request_destination", "destination_city_id", "status"),
        Index("ix_access_request_completed", "completed_at"),
        # The last delivery per city in one probe, however long the history (workflow.last_deliveries).
        Index("ix_access_request_city_completed", "destination_city_id", "completed_at"),
        # A status's requests in creation order (the review queue), without a sort.
        Index("ix_access_request_status_id", "status", "id"),
        # Upcoming convoys at any moment, however deep in history (workflow.upcoming_convoys).
        Index(
            "ix_access_request_in_flight",
            text(IN_FLIGHT_RANGE),
            postgresql_using="gist",
            postgresql_where=text("approved_at IS NOT NULL"),
        ).ddl_if(dialect="postgresql"),
    )

    # Optimistic locking: an UPDATE names the version it read; of two writers on the same
    # version the second updates nothing and fails (StaleDataError): never both succeed.
    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:  # noqa: N805
        return {"version_id_col": cls.__table__.c.version}

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    organization_id: uuid.UUID = Field(foreign_key="organization.id")
    created_by: str = Field(sa_type=String(64))
    destination_city_id: uuid.UUID = Field(foreign_key="city.id")
    origin_city_id: uuid.UUID | None = Field(default=None, foreign_key="city.id")
    origin_name: str | None = Field(default=None, sa_type=String(200))
    route: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONType)
    planned_departure: datetime = Field(sa_type=UTCDateTime)
    planned_arrival: datetime = Field(sa_type=UTCDateTime)
    trucks: int = Field(sa_type=Integer)
    people_targeted: int = Field(sa_type=Integer)
    contact: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    notes: str | None = Field(default=None, sa_type=Text)
    pause_id: uuid.UUID | None = Field(default=None)
    status: str = Field(sa_type=String(32))
    version: int = Field(default=1, sa_type=Integer)
    submitted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    review_due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    approved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    dispatched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    outcome: str | None = Field(default=None, sa_type=String(32))
    people_reached: int | None = Field(default=None, sa_type=Integer)
    last_reason: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CargoLine(SQLModel, table=True):
    __tablename__ = "cargo_line"
    __table_args__ = (Index("ix_cargo_line_request", "access_request_id", "position"),)

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    access_request_id: uuid.UUID = Field(foreign_key="access_request.id")
    position: int = Field(sa_type=Integer)
    sector: str = Field(sa_type=String(32))
    item: str = Field(sa_type=String(200))
    quantity: float = Field(sa_type=Float)
    unit: str = Field(sa_type=String(32))
    approved_quantity: float | None = Field(default=None, sa_type=Float)
    delivered_quantity: float | None = Field(default=None, sa_type=Float)
    removed_quantity: float | None = Field(default=None, sa_type=Float)
    removed_at: str | None = Field(default=None, sa_type=String(200))
    removal_reason: str | None = Field(default=None, sa_type=Text)


class Pause(SQLModel, table=True):
    """A humanitarian pause: a window in which the parties are asked to stop fighting."""

    __tablename__ = "pause"
    __table_args__ = (
        Index("ix_pause_starts", "starts_at"),
        Index("ix_pause_ends", "ends_at"),
    )

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:  # noqa: N805
        # Endorsements touch the pause too, so an approval races them on this version.
        return {"version_id_col": cls.__table__.c.version}

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    status: str = Field(sa_type=String(32))
    revision: int = Field(default=1, sa_type=Integer)
    version: int = Field(default=1, sa_type=Integer)
    starts_at: datetime = Field(sa_type=UTCDateTime)
    ends_at: datetime = Field(sa_type=UTCDateTime)
    purpose: str = Field(sa_type=Text)
    terms: str | None = Field(default=None, sa_type=Text)
    proposed_by: str = Field(sa_type=String(64))
    approved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    suspended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resumed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    terminated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    withdrawn_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_reason: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PauseCity(SQLModel, table=True):
    """A city of a pause, with the pause's window and whether it is in force (approved, active or
    suspended), kept equal to the pause's by triggers (alembic 0009): so that on PostgreSQL an
    exclusion constraint, pause_city_no_overlap, refuses two pauses in force for one city whose
    windows overlap, however their approvals interleave."""

    __tablename__ = "pause_city"
    __table_args__ = (Index("ix_pause_city_city", "city_id"),)

    pause_id: uuid.UUID = Field(foreign_key="pause.id", primary_key=True)
    city_id: uuid.UUID = Field(foreign_key="city.id", primary_key=True)
    starts_at: datetime = Field(sa_type=UTCDateTime)
    ends_at: datetime = Field(sa_type=UTCDateTime)
    in_force: bool = Field(default=False, sa_column_kwargs={"server_default": false()})


class PauseDelegation(SQLModel, table=True):
    """A co-chair delegation whose endorsement the pause needs, fixed when proposed."""

    __tablename__ = "pause_delegation"

    pause_id: uuid.UUID = Field(foreign_key="pause.id", primary_key=True)
    organization_id: uuid.UUID = Field(foreign_key="organization.id", primary_key=True)


class Endorsement(SQLModel, table=True):
    """A delegation's decision on one revision; a change of mind is a new row."""

    __tablename__ = "endorsement"
    __table_args__ = (Index("ix_endorsement_pause", "pause_id", "revision", "organization_id"),)

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    pause_id: uuid.UUID = Field(foreign_key="pause.id")
    organization_id: uuid.UUID = Field(foreign_key="organization.id")
    revision: int = Field(sa_type=Integer)
    decision: str = Field(sa_type=String(16))
    comment: str | None = Field(default=None, sa_type=Text)
    decided_by: uuid.UUID = Field(foreign_key="user_account.id")
    decided_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Acknowledgement(SQLModel, table=True):
    """What a party to the conflict answered about a pause, as reported by a coordinator."""

    __tablename__ = "acknowledgement"
    __table_args__ = (Index("ix_acknowledgement_pause", "pause_id"),)

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    pause_id: uuid.UUID = Field(foreign_key="pause.id")
    party: str = Field(sa_type=String(200))
    response: str = Field(sa_type=String(16))
    responded_at: datetime = Field(sa_type=UTCDateTime)
    through: str | None = Field(default=None, sa_type=String(200))
    recorded_by: uuid.UUID = Field(foreign_key="user_account.id")
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Violation(SQLModel, table=True):
    __tablename__ = "violation"
    __table_args__ = (
        Index("ix_violation_pause", "pause_id"),
        Index("ix_violation_city", "city_id"),
        Index("ix_violation_status", "status", "id"),
    )

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:  # noqa: N805
        return {"version_id_col": cls.__table__.c.version}

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    status: str = Field(sa_type=String(32))
    version: int = Field(default=1, sa_type=Integer)
    reported_by: str = Field(sa_type=String(64))
    reporter_organization_id: uuid.UUID = Field(foreign_key="organization.id")
    pause_id: uuid.UUID | None = Field(default=None, foreign_key="pause.id")
    city_id: uuid.UUID | None = Field(default=None, foreign_key="city.id")
    access_request_id: uuid.UUID | None = Field(default=None, foreign_key="access_request.id")
    category: str = Field(sa_type=String(64))
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    place: str | None = Field(default=None, sa_type=String(200))
    description: str = Field(sa_type=Text)
    severity: int = Field(sa_type=Integer)
    first_response_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_reason: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class WebhookSubscription(SQLModel, table=True):
    __tablename__ = "webhook_subscription"

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    owner_type: str = Field(sa_type=String(32))  # "user" or "service_account"
    owner_id: uuid.UUID = Field(index=True)
    organization_id: uuid.UUID = Field(foreign_key="organization.id")
    url: str = Field(sa_type=String(2048))
    event_types: list[str] = Field(default_factory=list, sa_type=JSONType)
    # Needed in clear to sign deliveries (Standard Webhooks); shown to the owner once.
    secret: str = Field(sa_type=String(128))
    status: str = Field(default="active", sa_type=String(16))
    failing_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookDelivery(SQLModel, table=True):
    """The outbox: written in the transaction of the change it reports."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id", name="uq_webhook_delivery_subscription_event"),
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
    )

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    subscription_id: uuid.UUID = Field(foreign_key="webhook_subscription.id")
    event_id: int = Field(sa_type=BigInteger().with_variant(Integer, "sqlite"))
    event_type: str = Field(sa_type=String(64))
    payload: str = Field(sa_type=Text)
    status: str = Field(default="pending", sa_type=String(16))
    attempts: int = Field(default=0, sa_type=Integer)
    next_attempt_at: datetime = Field(sa_type=UTCDateTime)
    last_status_code: int | None = Field(default=None, sa_type=Integer)
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookAttempt(SQLModel, table=True):
    __tablename__ = "webhook_attempt"
    __table_args__ = (Index("ix_webhook_attempt_delivery", "delivery_id"),)

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    delivery_id: uuid.UUID = Field(foreign_key="webhook_delivery.id")
    attempted_at: datetime = Field(sa_type=UTCDateTime)
    status_code: int | None = Field(default=None, sa_type=Integer)
    error: str | None = Field(default=None, sa_type=Text)
    duration_ms: int = Field(sa_type=Integer)


class IdempotencyKey(SQLModel, table=True):
    """The first response to a create, replayed for a retry with the same key."""

    __tablename__ = "idempotency_key"
    __table_args__ = (UniqueConstraint("principal_id", "key", name="uq_idempotency_key_principal_key"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    principal_id: str = Field(sa_type=String(64))
    key: str = Field(sa_type=String(255))
    operation: str = Field(sa_type=String(100))
    request_hash: str = Field(sa_type=String(64))
    status_code: int = Field(sa_type=Integer)
    response_body: str = Field(sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


__all__ = [
    "AccessRequest",
    "Acknowledgement",
    "Endorsement",
    "Pause",
    "PauseCity",
    "PauseDelegation",
    "Violation",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookSubscription",
    "AuditEvent",
    "CargoLine",
    "IdempotencyKey",
    "AuthSession",
    "City",
    "Designation",
    "LoginAttempt",
    "Organization",
    "RefreshToken",
    "RevokedToken",
    "ServiceAccount",
    "User",
]
