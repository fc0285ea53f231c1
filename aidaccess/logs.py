"""Structured JSON logs; every line carries the request id. Tokens and passwords are never logged."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

from aidaccess.context import current_request_id

ACCESS_LOGGER = "aidaccess.access"
access_log = logging.getLogger(ACCESS_LOGGER)

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": current_request_id(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "INFO") -> None:
    # Lines carry the logger's name and the request id; the caller's frame, thread and
    # process were a third of each access log line's cost (a sixth of a 304's).
    logging._srcfile = None  # noqa: SLF001 - the documented switch for findCaller
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own access log prints query strings (tokens may travel there); ours does not.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True


def log_request(method: str, path: str, route: str, status: int, duration_ms: float) -> None:
    """The access log's line for one request (never the query string: tokens may travel there)."""
    access_log.info("request", extra={"method": method, "path": path, "route": route, "status": status,
                                      "duration_ms": duration_ms})
