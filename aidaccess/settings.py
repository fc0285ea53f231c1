"""Settings from the environment (prefix ``AIDACCESS_``) and an optional ``.env``."""

from __future__ import annotations

import math
import os
import re
import secrets
from collections import Counter
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

# The value a development machine gets when nothing is configured; production refuses it.
DEFAULT_SECRET_KEY = "change-me-development-only"
MIN_SECRET_KEY_LENGTH = 32


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Environment(StrEnum):
    development = "development"
    production = "production"


class ConfigurationError(RuntimeError):
    """The configuration cannot be used; the message says what to change."""


class MetricsAccess(StrEnum):
    off = "off"  # /metrics answers 404
    local = "local"  # only to clients on this machine (loopback), e.g. a local Prometheus agent
    token = "token"  # to whoever sends AIDACCESS_METRICS_TOKEN as a bearer token


# A secret must carry at least this much entropy, estimated from its characters (Shannon's
# entropy of their frequencies, times its length): 32 spaces, one repeated character or a
# short word pattern carry none or little; 32 random URL-safe characters about 150 bits.
MIN_SECRET_BITS = 100
MIN_SECRET_DISTINCT = 10


def secret_weakness(value: str, name: str) -> str | None:
    """Why ``value`` is too weak to be a production secret, or None."""
    if len(value) < MIN_SECRET_KEY_LENGTH:
        return f"{name} is {len(value)} characters long; production needs at least {MIN_SECRET_KEY_LENGTH} random characters."
    counts = Counter(value)
    bits = sum(n * math.log2(len(value) / n) for n in counts.values())
    if len(counts) < MIN_SECRET_DISTINCT or bits < MIN_SECRET_BITS:
        return (
            f"{name} is too predictable ({len(counts)} distinct characters, about {bits:.0f} bits); production needs "
            "a random value, e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    return None


def describe_invalid(error: ValidationError) -> str:
    """A settings error as the operator can act on it: each variable and what is wrong with it."""
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        field = str(item["loc"][0]) if item["loc"] else ""
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"AIDACCESS_{field.upper()}: {message}" if field else message)
    return "invalid configuration: " + "; ".join(lines)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AIDACCESS_", env_file=".env", extra="ignore")

    env: Environment = Environment.development
    data_dir: Path = Path("./var")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default: an SQLite file in data_dir. "
        "PostgreSQL: postgresql+psycopg://user@host:5432/dbname",
    )
    secret_key: str = DEFAULT_SECRET_KEY
    jwt_issuer: str = "aidaccess"
    jwt_audience: str = "aidaccess-api"
    access_token_minutes: int = Field(default=10, ge=1, le=15)
    refresh_token_days: int = Field(default=14, ge=1, le=90)
    # A console sign-in lasts this long (one working day); signing out or anything that ends an API
    # session ends it sooner.
    console_session_hours: int = Field(default=10, ge=1, le=24)
    login_max_failures: int = Field(default=5, ge=1)
    login_window_minutes: int = Field(default=15, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Connections a worker may hold at once for request units of work. Requests beyond
    # it wait on the event loop, never on a threadpool thread, so the pool cannot deadlock.
    # Unset: 20 on PostgreSQL, 4 on SQLite, whose writes take turns anyway and whose every
    # pooled connection keeps its own page cache (docs/performance.md, "Pool size").
    db_pool_size: int | None = Field(default=None, ge=1, le=200)
    # Of those, how many may be writing at once (PostgreSQL; SQLite writes one at a time).
    # Unset: half the pool. Writers beyond it wait on the event loop, so writers
    # queued for the audit chain's lock never hold every connection while readers wait.
    db_writers: int | None = Field(default=None, ge=1, le=200)
    # Requests a worker process works on at once; the rest wait their turn in arrival order,
    # at most request_queue_seconds, then 503 (api.admission). Unset: 2 on SQLite, 8 on
    # PostgreSQL. A process is one core and one GIL, so more at once only share them; on
    # PostgreSQL a request also waits for the server's answers, and the core would idle then
    # (docs/performance.md, "Admission").
    concurrent_requests: int | None = Field(default=None, ge=1, le=1000)
    request_queue_seconds: float = Field(default=10, gt=0, le=600)
    # Argon2id cost (RFC 9106 second recommendation by default); stored hashes carry
    # their own parameters and are upgraded at the next sign-in when these change.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=1024)
    argon2_parallelism: int = Field(default=4, ge=1)
    # Sign-ins checking a password at once, per process, at low CPU priority (more wait their turn).
    # Unset: one per CPU core.
    password_checks: int | None = Field(default=None, ge=1, le=64)
    # Sign-ins a process holds at once (checking a secret, or waiting for a check), in all (unset:
    # 8 per password check) and per client address; beyond either, 503 with Retry-After, nothing stored.
    sign_in_places: int | None = Field(default=None, ge=1, le=10_000)
    sign_in_places_per_address: int = Field(default=2, ge=1, le=1_000)
    # Failed sign-ins from one client address within the window, whatever accounts they named (an
    # office behind one address shares it: keep it well above a person's typing errors).
    login_max_failures_per_address: int = Field(default=50, ge=1)
    # Review deadlines: a submitted request is due for a reply within this many working
    # days, counted in the taskforce's time zone, skipping its weekend.
    review_working_days: int = Field(default=7, ge=1, le=60)
    weekend_days: str = Field(default="fri,sat", description="Comma-separated: mon,tue,wed,thu,fri,sat,sun")
    timezone: str = "Asia/Damascus"
    max_cargo_lines: int = Field(default=50, ge=1, le=500)
    # Pauses: at most this long, and approved at least this long before they start.
    pause_max_days: int = Field(default=7, ge=1, le=60)
    pause_notice_hours: int = Field(default=72, ge=0, le=24 * 30)
    calendar_token_days: int = Field(default=180, ge=1, le=730)
    # Writes (POST, PUT, PATCH, DELETE) per principal and process: a burst, then a steady
    # rate; 0 turns the limit off. Sign-in has its own throttle (login_max_failures).
    write_rate_per_minute: int = Field(default=120, ge=0)
    write_burst: int = Field(default=60, ge=1)
    # Browser origins allowed to call the API (CORS), comma-separated; empty: CORS off,
    # so no other site's page can read a response with a user's token.
    cors_origins: str = Field(default="", description="e.g. https://dashboard.example.org,https://ops.example.org")
    # Keys the audit trail's seals (HMAC); kept outside the database, so that whoever can write the
    # database cannot rewrite the trail unseen. In development without one, a random key is kept in
    # the data directory. Changing it leaves every earlier seal unverifiable: keep it with the backups.
    audit_key: str | None = None
    # Who may read /metrics (request counts and latencies by route, queue depths).
    metrics: MetricsAccess = MetricsAccess.local
    metrics_token: str | None = None
    log_level: str = "INFO"
    root_path: str = ""
    # Behind a reverse proxy: the addresses (or networks) whose X-Forwarded-For and X-Forwarded-Proto
    # are believed, comma-separated. Empty: none, and the client address is the connection's (a client
    # could otherwise name any address and dodge the per-address sign-in limits).
    trusted_proxies: str = ""

    @model_validator(mode="after")
    def _metrics_token_given(self) -> Settings:
        if self.metrics == MetricsAccess.token and not self.metrics_token:
            raise ValueError("AIDACCESS_METRICS=token needs AIDACCESS_METRICS_TOKEN")
        return self

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            # One driver for PostgreSQL: psycopg 3.
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        if not (value.startswith("sqlite") or value.startswith("postgresql+psycopg://")):
            raise ValueError("use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB")
        return value

    @field_validator("weekend_days")
    @classmethod
    def _known_days(cls, value: str) -> str:
        days = [d.strip().lower()[:3] for d in value.split(",") if d.strip()]
        unknown = [d for d in days if d not in WEEKDAYS]
        if unknown or len(days) >= 7:
            raise ValueError(f"use up to six of {', '.join(WEEKDAYS)}")
        return ",".join(days)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        origins = [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
        for origin in origins:
            if origin == "*":
                raise ValueError("name each origin; '*' would let any site read the API with a user's token")
            if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", origin):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port])")
        return ",".join(origins)

    @property
    def cors_origin_list(self) -> list[str]:
        return [o for o in self.cors_origins.split(",") if o]

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'aidaccess.sqlite3').resolve()}"

    @property
    def resolved_db_pool_size(self) -> int:
        if self.db_pool_size is not None:
            return self.db_pool_size
        return 4 if self._on_sqlite else 20

    @property
    def resolved_concurrent_requests(self) -> int:
        if self.concurrent_requests is not None:
            return self.concurrent_requests
        return 2 if self._on_sqlite else 8

    @property
    def _on_sqlite(self) -> bool:
        return make_url(self.resolved_database_url).get_backend_name() == "sqlite"

    @property
    def is_production(self) -> bool:
        return self.env == Environment.production

    def signing_key(self) -> str:
        """The key tokens are signed with.

        In development without a configured key, a random one is kept in the data
        directory, so that tokens survive a restart and no shared default is ever used.
        """
        if self.secret_key != DEFAULT_SECRET_KEY or self.is_production:
            return self.secret_key
        return self._kept_key("secret_key")

    def audit_signing_key(self) -> str:
        """The key the audit trail is sealed with (development: kept in the data directory)."""
        if self.audit_key is not None or self.is_production:
            return self.audit_key or ""
        return self._kept_key("audit_key")

    def _kept_key(self, name: str) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / name
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        return path.read_text().strip()

    def check_production_ready(self) -> None:
        """Refuse to run in production with a secret that anyone could know or guess."""
        if not self.is_production:
            return
        if self.secret_key == DEFAULT_SECRET_KEY:
            raise ConfigurationError(
                "AIDACCESS_ENV=production but AIDACCESS_SECRET_KEY is not set (the development "
                "default would let anyone forge tokens). Set it to a random value of at least "
                f"{MIN_SECRET_KEY_LENGTH} characters, e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        weakness = secret_weakness(self.secret_key, "AIDACCESS_SECRET_KEY")
        if weakness:
            raise ConfigurationError(weakness)
        if not self.audit_key:
            raise ConfigurationError(
                "AIDACCESS_ENV=production but AIDACCESS_AUDIT_KEY is not set: the audit trail's seals need a key kept "
                "outside the database (not the secret key). Set it to a random value, e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))', and keep it with the backups."
            )
        if self.audit_key == self.secret_key:
            raise ConfigurationError("AIDACCESS_AUDIT_KEY must differ from AIDACCESS_SECRET_KEY.")
        weakness = secret_weakness(self.audit_key, "AIDACCESS_AUDIT_KEY")
        if weakness:
            raise ConfigurationError(weakness)
        if self.metrics == MetricsAccess.token:
            weakness = secret_weakness(self.metrics_token or "", "AIDACCESS_METRICS_TOKEN")
            if weakness:
                raise ConfigurationError(weakness)


@lru_cache
def get_settings() -> Settings:
    return Settings()
