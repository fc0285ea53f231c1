"""What a running process holds: settings, the database, token and password machinery."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from aidaccess import clock
from aidaccess.settings import Settings
from auth.opaque import SequenceCipher
from auth.passwords import PasswordHasher
from auth.tokens import TokenCodec
from db.engine import Database
from db.hot import HotReads, hot_reads_for
from workflow import audit
from workflow.access_requests import RequestRules
from workflow.identity import IdentityConfig
from workflow.pauses import PauseRules


@dataclass
class Services:
    settings: Settings
    database: Database
    hot: HotReads
    hasher: PasswordHasher
    codec: TokenCodec
    identity: IdentityConfig
    request_rules: RequestRules
    pause_rules: PauseRules
    audit_cursors: SequenceCipher


def build_services(
    settings: Settings,
    *,
    database: Database | None = None,
    hot: HotReads | None = None,
    hasher: PasswordHasher | None = None,
) -> Services:
    clock.set_zone(settings.timezone)
    audit.set_seal_key(settings.audit_signing_key())
    database = database or Database(
        settings.resolved_database_url, pool_size=settings.resolved_db_pool_size, writers=settings.db_writers
    )
    hasher = hasher or PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )
    codec = TokenCodec(key=settings.signing_key(), issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    identity = IdentityConfig(
        hasher=hasher,
        codec=codec,
        access_lifetime=timedelta(minutes=settings.access_token_minutes),
        refresh_lifetime=timedelta(days=settings.refresh_token_days),
        max_failures=settings.login_max_failures,
        failure_window=timedelta(minutes=settings.login_window_minutes),
        max_failures_per_address=settings.login_max_failures_per_address,
    )
    return Services(
        settings=settings,
        database=database,
        hot=hot or hot_reads_for(database.url),
        hasher=hasher,
        codec=codec,
        identity=identity,
        request_rules=RequestRules.from_settings(settings),
        pause_rules=PauseRules.from_settings(settings),
        audit_cursors=SequenceCipher(settings.signing_key(), "audit cursors"),
    )
