"""Idempotency-Key on creates, at the HTTP edge: the stored answer replayed as a response
(``workflow.idempotency`` keeps the keys)."""

from __future__ import annotations

import hashlib

import orjson
from sqlmodel import Session
from starlette.responses import Response

from auth.principal import Principal
from workflow.idempotency import remember_answer, remembered_answer


def body_hash(body: object) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def replay(
    session: Session, *, principal: Principal, key: str | None, operation: str, request_hash: str
) -> Response | None:
    """The stored response for this key, or None when the key is new (or absent)."""
    if key is None:
        return None
    answer = remembered_answer(session, principal=principal, key=key, operation=operation, request_hash=request_hash)
    if answer is None:
        return None
    return Response(
        answer.body,
        status_code=answer.status_code,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )


def remember(
    session: Session,
    *,
    principal: Principal,
    key: str | None,
    operation: str,
    request_hash: str,
    status_code: int,
    body: bytes,
) -> None:
    if key is not None:
        remember_answer(
            session,
            principal=principal,
            key=key,
            operation=operation,
            request_hash=request_hash,
            status_code=status_code,
            body=body.decode(),
        )
