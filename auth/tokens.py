"""JWT access tokens. The only module that imports jose.

Decoding pins HS256, requires ``exp``, ``iat`` and ``sub``, checks ``iss``, ``aud`` and
the token type, and checks time against the application clock. Verified tokens are
kept in a small cache (verifying is most of a poll's cost); expiry is still checked on every use.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from threading import Lock
from typing import Any

from jose import JWTError, jwt

from aidaccess.clock import utcnow

ALGORITHM = "HS256"
# Clock skew tolerated between servers for nbf/iat.
LEEWAY_SECONDS = 10


class TokenType(StrEnum):
    access = "access"
    # Calendar programs cannot send headers: these travel in a URL, so they are good for
    # reading the pause calendar and nothing else.
    calendar = "calendar"


class InvalidToken(Exception):
    """The token is not one this service issued, or no longer valid. The reason is for logs only."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    sub: str
    principal_kind: str
    org: str
    role: str | None
    scopes: tuple[str, ...]
    jti: str
    sid: str | None
    iat: int
    nbf: int
    exp: int
    # sub and sid parsed once per verified token, not on every request
    subject_id: uuid.UUID
    session_id: uuid.UUID | None


class TokenCodec:
    def __init__(self, *, key: str, issuer: str, audience: str, cache_size: int = 4096) -> None:
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self._cache: OrderedDict[str, AccessClaims] = OrderedDict()
        self._cache_size = cache_size
        self._lock = Lock()

    def issue_access(
        self,
        *,
        sub: str,
        principal_kind: str,
        org: str,
        role: str | None,
        scopes: list[str],
        lifetime: timedelta,
        sid: str | None = None,
    ) -> tuple[str, AccessClaims]:
        now = int(utcnow().timestamp())
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": sub,
            "pk": principal_kind,
            "org": org,
            "role": role,
            "scopes": scopes,
            "iat": now,
            "nbf": now,
            "exp": now + int(lifetime.total_seconds()),
            "jti": secrets.token_urlsafe(16),
            "typ": TokenType.access.value,
        }
        if sid is not None:
            claims["sid"] = sid
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM)
        return token, _to_claims(claims)

    def issue_calendar(self, *, sub: str, lifetime: timedelta) -> tuple[str, int]:
        now = int(utcnow().timestamp())
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": sub,
            "iat": now,
            "nbf": now,
            "exp": now + int(lifetime.total_seconds()),
            "jti": secrets.token_urlsafe(16),
            "typ": TokenType.calendar.value,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), now + int(lifetime.total_seconds())

    def decode_calendar(self, token: str) -> tuple[str, str, int, int]:
        """The user id, token id, issue time and expiry (seconds since 1970) of a calendar token."""
        payload = self._payload(token)
        if payload.get("typ") != TokenType.calendar.value:
            raise InvalidToken("not a calendar token")
        now = utcnow().timestamp()
        exp, nbf = payload.get("exp"), payload.get("nbf")
        if not isinstance(exp, int) or not isinstance(nbf, int) or "iat" not in payload:
            raise InvalidToken("malformed claims")
        if now >= exp or now + LEEWAY_SECONDS < nbf:
            raise InvalidToken("expired or not yet valid")
        if not isinstance(payload["iat"], int):
            raise InvalidToken("malformed claims")
        return str(payload["sub"]), str(payload["jti"]), payload["iat"], exp

    def decode_access(self, token: str) -> AccessClaims:
        with self._lock:
            claims = self._cache.get(token)
            if claims is not None:
                self._cache.move_to_end(token)
        if claims is None:
            claims = self._verify(token)
            with self._lock:
                self._cache[token] = claims
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        now = utcnow().timestamp()
        if now >= claims.exp:
            raise InvalidToken("expired")
        if now + LEEWAY_SECONDS < claims.nbf or now + LEEWAY_SECONDS < claims.iat:
            raise InvalidToken("not yet valid")
        return claims

    def _verify(self, token: str) -> AccessClaims:
        payload = self._payload(token)
        if payload.get("typ") != TokenType.access.value:
            raise InvalidToken("not an access token")
        try:
            return _to_claims(payload)
        except (KeyError, TypeError, ValueError):
            raise InvalidToken("malformed claims") from None

    def _payload(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != ALGORITHM:
                raise InvalidToken("algorithm not allowed")
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "require_sub": True,
                    "require_jti": True,
                    "require_iss": True,
                    "require_aud": True,
                    # exp, iat and nbf are required and checked against the application clock
                    # (decode_access, _to_claims): jose would check them against the system
                    # clock, and "require_exp" makes it do so whatever "verify_exp" says.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except JWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        if not isinstance(payload, dict):
            raise InvalidToken("malformed claims")
        return payload


def _to_claims(payload: dict[str, Any]) -> AccessClaims:
    scopes = payload.get("scopes") or []
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ValueError("scopes")
    for name in ("iat", "nbf", "exp"):
        if not isinstance(payload[name], int) or isinstance(payload[name], bool):
            raise ValueError(name)
    return AccessClaims(
        sub=str(payload["sub"]),
        principal_kind=str(payload["pk"]),
        org=str(payload["org"]),
        role=payload.get("role"),
        scopes=tuple(scopes),
        jti=str(payload["jti"]),
        sid=payload.get("sid"),
        iat=payload["iat"],
        nbf=payload["nbf"],
        exp=payload["exp"],
        subject_id=uuid.UUID(str(payload["sub"])),
        session_id=uuid.UUID(str(payload["sid"])) if payload.get("sid") else None,
    )


def new_opaque_token() -> str:
    """A refresh token or client secret: 256 random bits."""
    return secrets.token_urlsafe(32)


def hash_opaque_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def expires_at(claims: AccessClaims) -> datetime:
    from datetime import UTC

    return datetime.fromtimestamp(claims.exp, UTC)
