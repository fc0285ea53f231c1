"""A create remembered by its Idempotency-Key: a retry gets the first answer, never a second record.

The key and the answer are written in the create's own transaction, so either both exist or
neither does. Keys are kept 24 hours per principal; an expired key may be used again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import bindparam, delete, select
from sqlmodel import Session, col

from aidaccess.clock import utcnow
from auth.principal import Principal
from db.models import IdempotencyKey
from workflow.errors import InvalidInput

KEY_LIFETIME = timedelta(hours=24)
MAX_KEY_LENGTH = 255
KEY_FIELD = "header.idempotency-key"

_SAME_KEY = (col(IdempotencyKey.principal_id) == bindparam("principal_id"), col(IdempotencyKey.key) == bindparam("key"))
_LIVE_KEY = select(IdempotencyKey).where(*_SAME_KEY, col(IdempotencyKey.expires_at) > bindparam("now"))
_EXPIRED_KEY = delete(IdempotencyKey).where(*_SAME_KEY, col(IdempotencyKey.expires_at) <= bindparam("now"))


@dataclass(frozen=True)
class RememberedAnswer:
    status_code: int
    body: str


def remembered_answer(
    session: Session, *, principal: Principal, key: str, operation: str, request_hash: str
) -> RememberedAnswer | None:
    """The answer given to this key, or None when the key is new. The same key with another
    request (another operation or body) is refused: it names one request only."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput.field(KEY_FIELD, f"1 to {MAX_KEY_LENGTH} characters.", "invalid")
    which = {"principal_id": str(principal.id), "key": key, "now": utcnow()}
    stored = session.execute(_LIVE_KEY, which).scalar_one_or_none()
    if stored is None:
        session.execute(_EXPIRED_KEY, which)  # an expired key makes way for the new record
        return None
    if stored.operation != operation or stored.request_hash != request_hash:
        raise InvalidInput.field(
            KEY_FIELD, "This key was used with another request; use a new key for a new request.", "key_reused"
        )
    return RememberedAnswer(stored.status_code, stored.response_body)


def remember_answer(
    session: Session, *, principal: Principal, key: str, operation: str, request_hash: str, status_code: int, body: str
) -> None:
    now = utcnow()
    session.add(
        IdempotencyKey(
            principal_id=str(principal.id),
            key=key,
            operation=operation,
            request_hash=request_hash,
            status_code=status_code,
            response_body=body,
            created_at=now,
            expires_at=now + KEY_LIFETIME,
        )
    )
    session.flush()
