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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import select
from sqlmodel import Session, col

from aidaccess import __version__
from aidaccess.clock import utcnow
from auth.principal import Principal
from db.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from workflow.audit import Actor, record_event
from workflow.errors import InvalidInput, NotFound
from workflow.events import EVENT_TYPES, public_event_id

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
            raise InvalidInput.field(
                field, f"{hostname} resolves to {text}: webhooks never go to {reason}.", "refused_address"
            )
    return addresses


def _resolve(host: str) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})


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
        raise InvalidInput.field(
            "body.event_types", f"Unknown event type {unknown[0]}; known: {', '.join(EVENT_TYPES)}.", "unknown_type"
        )
    check_url(url, production=production)
    subscription = WebhookSubscription(
        owner_type=actor.kind.value,
        owner_id=actor.id,
        organization_id=actor.organization_id,
        url=url,
        event_types=sorted(set(event_types)),
        secret=new_secret(),
    )
    session.add(subscription)
    session.flush()
    record_event(
        session,
        actor=Actor.of(actor),
        entity_type="webhook_subscription",
        entity_id=subscription.id,
        action="created",
        to_state="active",
        changes={"url": url, "event_types": subscription.event_types},
    )
    return subscription


def own_subscription(*, session: Session, actor: Principal, subscription_id: uuid.UUID) -> WebhookSubscription:
    subscription = session.get(WebhookSubscription, subscription_id)
    if subscription is None or subscription.deleted_at is not None or subscription.owner_id != actor.id:
        raise NotFound("No such webhook.")
    return subscription


def list_subscriptions(*, session: Session, actor: Principal) -> list[WebhookSubscription]:
    return list(
        session.execute(
            select(WebhookSubscription)
            .where(col(WebhookSubscription.owner_id) == actor.id, col(WebhookSubscription.deleted_at).is_(None))
            .order_by(col(WebhookSubscription.id))
        ).scalars()
    )


def delete_subscription(*, session: Session, actor: Principal, subscription_id: uuid.UUID) -> None:
    subscription = own_subscription(session=session, actor=actor, subscription_id=subscription_id)
    subscription.deleted_at = utcnow()
    session.add(subscription)
    record_event(
        session,
        actor=Actor.of(actor),
        entity_type="webhook_subscription",
        entity_id=subscription.id,
        action="deleted",
        from_state=subscription.status,
        to_state="deleted",
    )


def deliveries(
    *, session: Session, actor: Principal, subscription_id: uuid.UUID, limit: int = 100
) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    subscription = own_subscription(session=session, actor=actor, subscription_id=subscription_id)
    rows = list(
        session.execute(
            select(WebhookDelivery)
            .where(col(WebhookDelivery.subscription_id) == subscription.id)
            .order_by(col(WebhookDelivery.event_id).desc())
            .limit(limit)
        ).scalars()
    )
    attempts: dict[uuid.UUID, list[WebhookAttempt]] = {d.id: [] for d in rows}
    if rows:
        for attempt in session.execute(
            select(WebhookAttempt)
            .where(col(WebhookAttempt.delivery_id).in_(list(attempts)))
            .order_by(col(WebhookAttempt.attempted_at))
        ).scalars():
            attempts[attempt.delivery_id].append(attempt)
    return [(d, attempts[d.id]) for d in rows]


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
    stmt = (
        select(WebhookDelivery)
        .where(col(WebhookDelivery.status) == "pending", col(WebhookDelivery.next_attempt_at) <= now)
        .order_by(col(WebhookDelivery.next_attempt_at))
        .limit(limit)
    )
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


def envelope(event_json: str) -> str:
    """The Standard Webhooks body of a queued event (a feed item, as the outbox keeps it): ``type``,
    ``timestamp`` (when it happened) and ``data`` (the feed item itself). Made at sending, so deliveries
    queued before the shape was adopted go out in it too."""
    event = json.loads(event_json)
    return json.dumps({"type": event["type"], "timestamp": event["occurred_at"], "data": event}, separators=(",", ":"))


# Names the sender and its version, so a receiver's logs and firewall can tell our deliveries.
USER_AGENT = f"aidaccess-webhooks/{__version__}"


def send(claimed: Claimed, *, http: Any, production: bool) -> Outcome:
    started = time.perf_counter()
    message_id = f"msg_{public_event_id(claimed.event_id)}_{claimed.delivery_id.hex[:8]}"
    timestamp = int(utcnow().timestamp())
    body = envelope(claimed.body)
    try:
        addresses = check_url(claimed.url, production=production)  # again: DNS may have changed since
        target, host, extensions = pinned(claimed.url, addresses[0])
        response = http.post(
            target,
            content=body.encode(),
            extensions=extensions,
            headers={
                **host,
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(claimed.secret, message_id, timestamp, body),
            },
        )
        return Outcome(response.status_code, None, int((time.perf_counter() - started) * 1000))
    except InvalidInput as exc:
        return Outcome(None, f"refused: {exc.detail}", int((time.perf_counter() - started) * 1000))
    except Exception as exc:  # noqa: BLE001 - any transport failure is a failed attempt, retried
        return Outcome(None, type(exc).__name__, int((time.perf_counter() - started) * 1000))


def record(session: Session, claimed: Claimed, outcome: Outcome, *, rng: random.Random | None = None) -> str:
    delivery = session.get_one(WebhookDelivery, claimed.delivery_id)
    now = utcnow()
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            attempted_at=now,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
        )
    )
    delivery.attempts += 1
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    subscription = session.get_one(WebhookSubscription, delivery.subscription_id)
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
