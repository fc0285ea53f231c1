"""The one clock the application reads, so tests can set the time instead of sleeping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo


def _system_now() -> datetime:
    return datetime.now(UTC)


_now: Callable[[], datetime] = _system_now


def utcnow() -> datetime:
    return _now()


def set_clock(now: Callable[[], datetime] | None) -> None:
    """Replace the clock (tests); ``None`` restores the system clock."""
    global _now
    _now = now or _system_now


# The taskforce's time zone: its calendar days are the grain at which convoy times reach
# callers who may not read the convoy (auth.policy.convoy_moment), and the days the pictures count.
_zone: ZoneInfo = ZoneInfo("Asia/Damascus")


def set_zone(name: str) -> None:
    global _zone
    _zone = ZoneInfo(name)


def local_date(moment: datetime) -> date:
    """The taskforce's calendar day that ``moment`` falls on."""
    return moment.astimezone(_zone).date()


def day_start(moment: datetime) -> datetime:
    """The start (in UTC) of the taskforce's calendar day that ``moment`` falls on."""
    start = datetime.combine(local_date(moment), time(0), tzinfo=_zone)
    return start.astimezone(UTC)


def zone() -> ZoneInfo:
    """The taskforce's time zone (the console shows every moment in it, offset included)."""
    return _zone
