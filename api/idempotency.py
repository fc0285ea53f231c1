"""Idempotency-Key for creates: a retry gets the first response, never a second record.

The key and the response are written in the create's own transaction, so either both
exist or neither does. Keys are kept 24 hours per principal.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

import orjson
from sqlalchemy import bindparam, delete, select
from sqlmodel import Session
from starlette.responses import Response

from aidaccess.clock import utcnow
from auth.principal import Principal
from db.models import IdempotencyKey
from workflow.errors import InvalidInput

KEY_LIFETIME = timedelta(hours=24)
MAX_KEY_LENGTH = 255

# Built once, as the workflow's statements on a create's path (workflow.audit): each keeps its cache key.
_SAME_KEY = (IdempotencyKey.principal_id == bindparam("principal_id"), IdempotencyKey.key == bindparam("key"))
_LIVE_KEY = select(IdempotencyKey).where(*_SAME_KEY, IdempotencyKey.expires_at > bindparam("now"))
_EXPIRED_KEY = delete(IdempotencyKey).where(*_SAME_KEY, IdempotencyKey.expires_at <= bindparam("now"))


def body_hash(body: object) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def replay(session: Session, *, principal: Principal, key: str | None, operation: str, request_hash: str) -> Response | None:
    """The stored response for this key, or None when the key is new (or absent)."""
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput.field("header.idempotency-key", f"1 to {MAX_KEY_LENGTH} characters.", "invalid")
    which = {"principal_id": str(principal.id), "key": key, "now": utcnow()}
    stored = session.execute(_LIVE_KEY, which).scalar_one_or_none()
    if stored is None:
        # An expired key may be reused: clear it so the new record can take its place.
        session.execute(_EXPIRED_KEY, which)
        return None
    if stored.operation != operation or stored.request_hash != request_hash:
        raise InvalidInput.field(
            "header.idempotency-key", "This key was used with another request; use a new key for a new request.", "key_reused"
        )
    return Response(stored.response_body, status_code=stored.status_code, media_type="application/json",
                    headers={"Idempotent-Replayed": "true"})


def remember(
    session: Session, *, principal: Principal, key: str | None, operation: str, request_hash: str, status_code: int, body: bytes
) -> None:
    if key is None:
        return
    now = utcnow()
    session.add(
        IdempotencyKey(
            principal_id=str(principal.id), key=key, operation=operation, request_hash=request_hash,
            status_code=status_code, response_body=body.decode(), created_at=now, expires_at=now + KEY_LIFETIME,
        )
    )
    session.flush()
