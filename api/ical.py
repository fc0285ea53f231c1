"""A minimal RFC 5545 writer: UTC times, stable UIDs, escaped text, folded lines, CRLF."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

# RFC 5545 3.3.11: TEXT holds no control characters but HTAB; a line break is written \n.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _escape(text: str) -> str:
    """A TEXT value on one content line: a bare CR or LF cannot end it and start a property of its own."""
    escaped = text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return _CONTROL.sub("", _LINE_BREAK.sub(r"\\n", escaped))


def _fold(line: str) -> str:
    """Lines longer than 75 octets continue on the next line after a space (RFC 5545 3.1)."""
    data = line.encode("utf-8")
    if len(data) <= 75:
        return line
    parts, current, size = [], "", 0
    limit = 75
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > limit:
            parts.append(current)
            current, size, limit = char, width, 74  # continuation lines start with a space
        else:
            current += char
            size += width
    parts.append(current)
    return "\r\n ".join(parts)


def utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def calendar(name: str, events: Iterable[dict[str, str]]) -> bytes:
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//aidaccess//humanitarian pauses//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{_escape(name)}",
    ]
    for event in events:
        lines.append("BEGIN:VEVENT")
        for key, value in event.items():
            text = (
                value
                if key in ("DTSTART", "DTEND", "DTSTAMP", "LAST-MODIFIED", "SEQUENCE", "STATUS", "UID", "GEO")
                else _escape(value)
            )
            lines.append(f"{key}:{text}")
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return ("\r\n".join(_fold(line) for line in lines) + "\r\n").encode("utf-8")
