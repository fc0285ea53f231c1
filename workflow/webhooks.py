"""Webhooks: subscriptions, the outbox, and delivery with retries (Standard Webhooks).

A delivery row is written in the transaction of the change it reports (``enqueue``, called
by the audit append), so a committed change always has its deliveries and a rolled-back one
never does. ``aidaccess worker`` claims due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
several workers never take the same one; one writer at a time on SQLite), sends them with a
signature, and retries with exponential backoff and jitter for 24 hours, then gives up and
marks the subscription failing. A subscriber gets only what its owner may read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import random
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import bindparam, select
from sqlmodel import Session

from aidaccess.clock import utcnow
from auth.principal import Principal
from auth.roles import OrganizationKind, PrincipalKind, Role, Scope
from db.models import (
    AuditEvent,
    Organization,
    ServiceAccount,
    User,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from workflow.audit import Actor, RecordedEvent, public_event_id, record_event
from workflow.common import read_rows
from workflow.errors import InvalidInput, NotFound
from workflow.events import EVENT_TYPES, event_type, readable_predicate, visible_entities

RETRY_WINDOW = timedelta(hours=24)
FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 3600.0
LEASE = timedelta(seconds=60)
TIMEOUT_SECONDS = 10.0


# ---- where we may send ---------------------------------------------------------------


def _refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, production: bool) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    if address.is_link_local or address.is_multicast or address.is_unspecified or address.is_reserved:
        return "link-local, multicast or reserved addresses (cloud metadata lives there)"
    if production and not address.is_global:
        # Private, loopback, shared address space (100.64.0.0/10, where some clouds keep their
        # metadata), documentation and benchmarking ranges: nothing a subscriber on the internet has.
        return "addresses that are not globally routable"
    return None


def _valid_host(host: str) -> bool:
    """A host name whose labels are 1 to 63 characters (IDNA-encoded), 253 at most in all, or an IP address."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        encoded = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = encoded.rstrip(".").split(".")
    return len(encoded) <= 253 and all(0 < len(label) <= 63 for label in labels)


def check_url(url: str, *, production: bool, resolve: Callable[[str], list[str]] | None = None) -> list[str]:
    """https in production (http://127.0.0.1 and localhost allowed in development); never
    an address that resolves inside: link-local (cloud metadata), multicast, reserved, and in
    production anything not globally routable. The addresses checked, to connect to those and
    no others (a second lookup could answer differently)."""
    field = "body.url"
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 - a port out of range raises here
    except ValueError:
        raise InvalidInput.field(field, "An absolute http(s) URL is needed.", "invalid_url") from None
    if parts.scheme not in ("https", "http") or not hostname:
        raise InvalidInput.field(field, "An absolute http(s) URL is needed.", "invalid_url")
    if not _valid_host(hostname):
        raise InvalidInput.field(field, "The host name is not valid (each label 1 to 63 characters).", "invalid_url")
    if parts.username or parts.password:
        raise InvalidInput.field(field, "No credentials in the URL; verify our signature instead.", "invalid_url")
    if parts.scheme == "http" and (production or hostname not in ("127.0.0.1", "localhost", "::1")):
        raise InvalidInput.field(field, "Use https (plain http only to 127.0.0.1 in development).", "https_required")
    try:
        addresses = (resolve or _resolve)(hostname)
    except (OSError, UnicodeError):
        raise InvalidInput.field(field, f"{hostname} does not resolve.", "unresolvable") from None
    if not addresses:
        raise InvalidInput.field(field, f"{hostname} does not resolve.", "unresolvable")
    for text in addresses:
        reason = _refused(ipaddress.ip_address(text.split("%")[0]), production=production)
        if reason:
            raise InvalidInput.field(field, f"{hostname} resolves to {text}: webhooks never go to {reason}.", "refused_address")
    return addresses


def _resolve(host: str) -> list[str]:
    return sorted({info[4][0] for info in socket.getaddrinfo(host, None)})


def pinned(url: str, address: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """The URL with its host replaced by an address already checked, the Host header that names
    the host, and the TLS server name to verify the certificate against: the connection goes where
    the check looked, whatever DNS answers by then."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = parts.netloc.rsplit("@", 1)[-1]
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return target, {"host": host_header}, extensions


# ---- subscriptions -------------------------------------------------------------------


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def create_subscription(
    *, session: Session, actor: Principal, url: str, event_types: list[str], production: bool
) -> WebhookSubscription:
    unknown = [t for t in event_types if t not in EVENT_TYPES]
    if unknown:
        raise InvalidInput.field("body.event_types", f"Unknown event type {unknown[0]}.", "unknown_type")
    check_url(url, production=production)
    subscription = WebhookSubscription(
        owner_type=actor.kind.value, owner_id=actor.id, organization_id=actor.organization_id, url=url,
        event_types=sorted(set(event_types)), secret=new_secret(),
    )
    session.add(subscription)
    session.flush()
    record_event(session, actor=Actor.of(actor), entity_type="webhook_subscription", entity_id=subscription.id,
                 action="created", to_state="active", changes={"url": url, "event_types": subscription.event_types})
    return subscription


def own_subscription(*, session: Session, actor: Principal, subscription_id: uuid.UUID) -> WebhookSubscription:
    subscription = session.get(WebhookSubscription, subscription_id)
    if subscription is None or subscription.deleted_at is not None or subscription.owner_id != actor.id:
        raise NotFound("No such webhook.")
    return subscription


def list_subscriptions(*, session: Session, actor: Principal) -> list[WebhookSubscription]:
    return list(session.execute(select(WebhookSubscription).where(
        WebhookSubscription.owner_id == actor.id, WebhookSubscription.deleted_at.is_(None)).order_by(WebhookSubscription.id)).scalars())


def delete_subscription(*, session: Session, actor: Principal, subscription_id: uuid.UUID) -> None:
    subscription = own_subscription(session=session, actor=actor, subscription_id=subscription_id)
    subscription.deleted_at = utcnow()
    session.add(subscription)
    record_event(session, actor=Actor.of(actor), entity_type="webhook_subscription", entity_id=subscription.id,
                 action="deleted", from_state=subscription.status, to_state="deleted")


def deliveries(*, session: Session, actor: Principal, subscription_id: uuid.UUID, limit: int = 100) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    subscription = own_subscription(session=session, actor=actor, subscription_id=subscription_id)
    rows = list(session.execute(select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription.id)
                                .order_by(WebhookDelivery.event_id.desc()).limit(limit)).scalars())
    attempts: dict[uuid.UUID, list[WebhookAttempt]] = {d.id: [] for d in rows}
    if rows:
        for attempt in session.execute(select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(list(attempts)))
                                       .order_by(WebhookAttempt.attempted_at)).scalars():
            attempts[attempt.delivery_id].append(attempt)
    return [(d, attempts[d.id]) for d in rows]


# ---- the outbox ----------------------------------------------------------------------


def _owner(session: Session, subscription: WebhookSubscription) -> Principal | None:
    """The subscription's owner as they are now: what they may read is what they get."""
    if subscription.owner_type == PrincipalKind.user:
        user = session.get(User, subscription.owner_id)
        if user is None or not user.active:
            return None
        organization = session.get(Organization, user.organization_id)
        return Principal(kind=PrincipalKind.user, id=user.id, label=user.email, name=user.full_name,
                         organization_id=user.organization_id, organization_name=organization.name,
                         organization_kind=OrganizationKind(organization.kind), role=Role(user.role),
                         scopes=frozenset(), token_id="", token_expires_at=0)
    account = session.get(ServiceAccount, subscription.owner_id)
    if account is None or account.deleted_at is not None:
        return None
    organization = session.get(Organization, account.organization_id)
    return Principal(kind=PrincipalKind.service_account, id=account.id, label=account.client_id, name=account.name,
                     organization_id=account.organization_id, organization_name=organization.name,
                     organization_kind=OrganizationKind(organization.kind), role=None,
                     scopes=frozenset(account.scopes) & {s.value for s in Scope}, token_id="", token_expires_at=0)


def payload(event: AuditEvent | RecordedEvent, kind: str) -> dict[str, Any]:
    """The same shape as an item of the change feed."""
    return {"id": public_event_id(event.id), "type": kind, "occurred_at": event.occurred_at.isoformat().replace("+00:00", "Z"),
            "entity_type": event.entity_type, "entity_id": event.entity_id, "state": event.to_state}


# Built once, as audit's statements. Which live subscriptions want an event is read as rows on the
# unit of work's connection, every write asks and most find none; those that want it are loaded whole.
_LIVE_SUBSCRIPTIONS = (select(WebhookSubscription.id, WebhookSubscription.event_types)
                       .where(WebhookSubscription.deleted_at.is_(None)).order_by(WebhookSubscription.id))
_SUBSCRIPTIONS = (select(WebhookSubscription).where(WebhookSubscription.id.in_(bindparam("ids", expanding=True)))
                  .order_by(WebhookSubscription.id))


# The same rows as one JSON value, [[id, event types], ...] by id, for a statement to carry beside its
# own columns: the audit trail's append on PostgreSQL, a round trip fewer for a write a subscription can want.
LIVE_SUBSCRIPTIONS_JSON = (
    "(SELECT coalesce(json_agg(json_build_array(s.id, s.event_types) ORDER BY s.id), '[]'::json)"
    " FROM webhook_subscription s WHERE s.deleted_at IS NULL)"
)


def subscribable(events: Iterable[tuple[str, str]]) -> bool:
    """Whether any of ``events`` (entity type, action) is a kind a subscription can want."""
    return any(event_type(entity_type, action) is not None for entity_type, action in events)


def live_subscriptions(session: Session, events: Iterable[tuple[str, str]]) -> list[tuple[uuid.UUID, list[str]]]:
    """(id, event types) of every live subscription: what ``enqueue`` needs of them all. Not read where
    none of ``events`` is ``subscribable``, as enqueue would skip them."""
    if not subscribable(events):
        return []
    return [tuple(row) for row in read_rows(session, _LIVE_SUBSCRIPTIONS)]


def live_subscriptions_of(value: list[list[Any]]) -> list[tuple[uuid.UUID, list[str]]]:
    """``live_subscriptions`` from the value of ``LIVE_SUBSCRIPTIONS_JSON``."""
    return [(uuid.UUID(id_), event_types) for id_, event_types in value]


def enqueue(session: Session, event: RecordedEvent, live: list[tuple[uuid.UUID, list[str]]]) -> None:
    """The outbox rows of ``event``, one per subscription of ``live`` that wants it and may read it."""
    kind = event_type(event.entity_type, event.action)
    if kind is None:
        return
    wanted = [id_ for id_, event_types in live if kind in event_types]
    if not wanted:
        return
    for subscription in session.execute(_SUBSCRIPTIONS, {"ids": wanted}).scalars():
        owner = _owner(session, subscription)
        if owner is None or event.entity_type not in visible_entities(owner) or not readable_predicate(session, owner, [event])(event):
            continue
        session.add(WebhookDelivery(
            subscription_id=subscription.id, event_id=event.id, event_type=kind,
            payload=json.dumps(payload(event, kind), separators=(",", ":")), next_attempt_at=event.occurred_at,
        ))


# ---- delivery ------------------------------------------------------------------------


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def backoff(attempts: int, rng: random.Random | None = None) -> timedelta:
    """5 s, 10 s, 20 s ... up to an hour, each ±20 %: about 30 attempts over 24 hours."""
    base = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * (2 ** max(0, attempts - 1)))
    return timedelta(seconds=base * (rng or random).uniform(0.8, 1.2))


@dataclass(frozen=True)
class Claimed:
    delivery_id: uuid.UUID
    event_id: int
    url: str
    secret: str
    body: str


def claim(session: Session, *, limit: int = 20) -> list[Claimed]:
    """Take due deliveries for a lease; commit right after, then send outside any transaction."""
    now = utcnow()
    stmt = (select(WebhookDelivery).where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    claimed = []
    for delivery in session.execute(stmt).scalars().all():
        subscription = session.get(WebhookSubscription, delivery.subscription_id)
        if subscription is None or subscription.deleted_at is not None:
            delivery.status = "abandoned"
            delivery.last_error = "subscription deleted"
            session.add(delivery)
            continue
        delivery.next_attempt_at = now + LEASE  # another worker skips it until the lease ends
        session.add(delivery)
        claimed.append(Claimed(delivery.id, delivery.event_id, subscription.url, subscription.secret, delivery.payload))
    return claimed


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int


def send(claimed: Claimed, *, http: Any, production: bool) -> Outcome:
    started = time.perf_counter()
    message_id = f"msg_{public_event_id(claimed.event_id)}_{claimed.delivery_id.hex[:8]}"
    timestamp = int(utcnow().timestamp())
    try:
        addresses = check_url(claimed.url, production=production)  # again: DNS may have changed since
        target, host, extensions = pinned(claimed.url, addresses[0])
        response = http.post(
            target, content=claimed.body.encode(), extensions=extensions,
            headers={**host, "content-type": "application/json", "webhook-id": message_id, "webhook-timestamp": str(timestamp),
                     "webhook-signature": sign(claimed.secret, message_id, timestamp, claimed.body)},
        )
        return Outcome(response.status_code, None, int((time.perf_counter() - started) * 1000))
    except InvalidInput as exc:
        return Outcome(None, f"refused: {exc.detail}", int((time.perf_counter() - started) * 1000))
    except Exception as exc:  # noqa: BLE001 - any transport failure is a failed attempt, retried
        return Outcome(None, type(exc).__name__, int((time.perf_counter() - started) * 1000))


def record(session: Session, claimed: Claimed, outcome: Outcome, *, rng: random.Random | None = None) -> str:
    delivery = session.get(WebhookDelivery, claimed.delivery_id)
    now = utcnow()
    session.add(WebhookAttempt(delivery_id=delivery.id, attempted_at=now, status_code=outcome.status_code,
                               error=outcome.error, duration_ms=outcome.duration_ms))
    delivery.attempts += 1
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    subscription = session.get(WebhookSubscription, delivery.subscription_id)
    if outcome.status_code is not None and 200 <= outcome.status_code < 300:
        delivery.status = "delivered"
        delivery.delivered_at = now
        if subscription.status != "active":
            subscription.status, subscription.failing_since = "active", None
    elif now - delivery.created_at >= RETRY_WINDOW or (outcome.error or "").startswith("refused"):
        delivery.status = "abandoned"
        subscription.status = "failing"
        subscription.failing_since = subscription.failing_since or now
    else:
        delivery.next_attempt_at = now + backoff(delivery.attempts, rng)
    session.add(delivery)
    session.add(subscription)
    return delivery.status


def run_once(
    session_factory: Callable[[], Session], *, http: Any, production: bool, limit: int = 20, parallel: int = 8
) -> int:
    """One round: claim, send (in parallel, so a slow subscriber holds up no other), record
    each result as it comes. Returns how many deliveries were attempted."""
    with session_factory() as session:
        claimed = claim(session, limit=limit)
        session.commit()
    if not claimed:
        return 0
    with ThreadPoolExecutor(max_workers=min(parallel, len(claimed))) as pool:
        futures = {pool.submit(send, item, http=http, production=production): item for item in claimed}
        for future in as_completed(futures):
            with session_factory() as session:
                record(session, futures[future], future.result())
                session.commit()
    return len(claimed)
