"""Structured JSON logs; every line carries the request id. Tokens and passwords are never logged."""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime

import orjson

from aidaccess.context import current_request_id

ACCESS_LOGGER = "aidaccess.access"
access_log = logging.getLogger(ACCESS_LOGGER)
# The handler configure_logging installed, which the access log writes to directly.
_handler: logging.StreamHandler | None = None

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
    # process are not worth their cost on every access log line.
    logging._srcfile = None  # noqa: SLF001 - the documented switch for findCaller
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    global _handler  # noqa: PLW0603 - one process, one logging setup
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    _handler = handler
    root.setLevel(level.upper())
    # uvicorn's own access log prints query strings (tokens may travel there); ours does not.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True


def log_request(method: str, path: str, route: str, status: int, duration_ms: float) -> None:
    """The access log's line for one request, the same JSON as JsonFormatter's.

    Served by ``configure_logging``'s handler it is written without a LogRecord, which would be
    a fifth of a poll's cost (docs/performance.md, "What the machinery buys"). Anywhere else
    (tests, an embedding app with its own handlers or filters) it goes through logging.
    """
    if not access_log.isEnabledFor(logging.INFO):
        return
    handler = _handler
    if (
        handler is None
        or access_log.handlers
        or access_log.filters
        or not access_log.propagate
        or logging.root.handlers != [handler]
    ):
        access_log.info(
            "request",
            extra={"method": method, "path": path, "route": route, "status": status, "duration_ms": duration_ms},
        )
        return
    line = orjson.dumps(
        {
            "time": datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="milliseconds"),
            "level": "info",
            "logger": ACCESS_LOGGER,
            "message": "request",
            "request_id": current_request_id(),
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": duration_ms,
        }
    ).decode()
    try:
        with handler.lock:  # the lock logging's own writes to this stream take
            handler.stream.write(line + handler.terminator)
            handler.flush()
    except Exception:  # noqa: BLE001 - as logging does: a log that cannot be written never fails the request
        handler.handleError(access_log.makeRecord(ACCESS_LOGGER, logging.INFO, "", 0, "request", (), None))
