"""One pure-ASGI middleware for what every response needs: a request id, security
headers, an access log line and Prometheus metrics (BaseHTTPMiddleware would cost a
task and a memory stream per request)."""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aidaccess.context import request_id_var
from aidaccess.logs import log_request
from api.console import is_console_path
from api.pagination import is_list, next_link

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

API_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
# The API docs pages run their own scripts and styles, served from this host only.
DOCS_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; worker-src 'self' blob:; frame-ancestors 'none'",
    ),
]
DOCS_PREFIXES = ("/docs", "/redoc", "/static/docs")
# The console's pages set their own Content-Security-Policy (api.console.web); these go with it.
CONSOLE_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"cross-origin-resource-policy", b"same-origin"),
]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "aidaccess_http_requests_total",
            "HTTP requests by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "aidaccess_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ("method", "route"),
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.cached_reads = Counter(
            "aidaccess_cached_reads_total",
            "Polls of the snapshot and access pictures answered before routing, by status (api.fastpath).",
            ("status",),
            registry=self.registry,
        )
        # The labelled children, looked up once per label set (.labels() takes a lock and
        # builds tuples on every call); as many as Prometheus itself keeps.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def watch_writes(self, database: Any) -> None:
        """The writes of this process waiting for their turn (``Database.writer_turn``)."""
        Gauge(
            "aidaccess_writes_waiting",
            "Writes waiting for their turn in this process (at most DB_WRITERS write at once).",
            registry=self.registry,
        ).set_function(lambda: database.writes_waiting)

    def watch_admission(self, admission: Any) -> None:
        """The requests of this process waiting to be let in (``api.admission``)."""
        Gauge(
            "aidaccess_requests_waiting",
            "Requests waiting to be let in to this process (at most CONCURRENT_REQUESTS are worked on at once).",
            registry=self.registry,
        ).set_function(lambda: admission.waiting)

    def children(self, method: str, route: str, status: int) -> tuple[Any, Any]:
        """The request counter and latency histogram of one method, route template and status."""
        key = (method, route, status)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        return found


class _BodyTooLarge(Exception):
    pass


class _NulInRequest(Exception):
    pass


# U+0000 in a JSON string: \u0000 after an even number of other backslashes.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)


def _carries_nul(body: bytes, form: bool) -> bool:
    """PostgreSQL cannot store U+0000 in text and SQLite would; refused everywhere, so
    both engines answer the same, and before anything reaches the database."""
    return b"\x00" in body or (form and b"%00" in body) or _JSON_NUL.search(body) is not None


class RequestContextMiddleware:
    """Also the last line of defence: a body over the limit becomes a 413 problem and an
    unhandled exception a 500 problem, both with the request id and security headers
    (Starlette's own handlers for these sit outside user middleware and would send
    plain text without them)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int, hsts: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        declared_length = 0
        form = False
        content_type = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _VALID_REQUEST_ID.match(candidate):
                    request_id = candidate
            elif name == b"content-length" and value.isdigit():
                declared_length = int(value)
            elif name == b"content-type":
                content_type = value
                form = value.startswith(b"application/x-www-form-urlencoded")
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        if request_id is None:
            request_id = os.urandom(16).hex()  # as opaque as uuid4().hex, a quarter of its cost
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        state = {
            "status": 500,
            "started": False,
            "too_large": declared_length > self.max_body_bytes,
            "received": 0,
            "nul": b"%00" in scope["query_string"] or b"%00" in scope.get("raw_path", b""),
        }
        body = bytearray()
        path: str = scope["path"]
        if path.startswith(DOCS_PREFIXES):
            extra_headers = DOCS_SECURITY_HEADERS
        elif is_console_path(path):
            extra_headers = CONSOLE_SECURITY_HEADERS
        else:
            extra_headers = API_SECURITY_HEADERS
        # A page of a list answers Link: rel="next" beside its next_cursor (RFC 8288): its start is
        # held until its body names the cursor. Here, not a middleware of its own: no layer more on
        # every request, the hot paths included.
        lists = is_list(scope["method"], path)
        held: list[Message] = []

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers.append((b"x-request-id", request_id.encode()))
                for key, value in extra_headers:
                    if key not in present:
                        headers.append((key, value))
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                rate_limit = scope.get("state", {}).get("rate_limit")
                if rate_limit is not None:  # a write counted against its principal's rate (api.deps.count_write)
                    headers.append((b"ratelimit-policy", rate_limit[0].encode()))
                    headers.append((b"ratelimit", rate_limit[1].encode()))
                if self.hsts:
                    headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
                message = {**message, "headers": headers}
                if (
                    lists
                    and message["status"] == 200
                    and any(k == b"content-type" and v.startswith(b"application/json") for k, v in headers)
                ):
                    held.append(message)
                    return
            elif held:
                start = held.pop()
                if not message.get("more_body", False):
                    link = next_link(path, scope["query_string"], message.get("body", b""), scope.get("root_path", ""))
                    if link is not None:
                        start["headers"].append((b"link", link))
                await send(start)
            await send(message)

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                state["received"] += len(chunk)
                if state["received"] > self.max_body_bytes:
                    state["too_large"] = True
                    raise _BodyTooLarge
                # Checked whole, before the app has its last chunk (bodies are bounded above).
                body.extend(chunk)
                if not message.get("more_body", False) and _carries_nul(bytes(body), form):
                    state["nul"] = True
                    raise _NulInRequest
            return message

        async def app_send(message: Message) -> None:
            # Once the request is known to be refused, whatever the app answers is replaced.
            if state["too_large"] or state["nul"]:
                return
            await send_with_headers(message)

        # A JSON body under another name would be refused as a 422 about its fields: say what is
        # wrong instead, before anything is read.
        not_json = (
            scope["method"] in _BODY_METHODS
            and path.startswith("/v1/")
            and path not in FORM_PATHS
            and (declared_length > 0 or chunked)
            and not _is_json(content_type)
        )
        try:
            if not_json:
                await _problem(415, "Send the body as JSON, with Content-Type: application/json.", path)(
                    scope, receive, send_with_headers
                )
            else:
                if not state["too_large"] and not state["nul"]:
                    try:
                        await self.app(scope, counting_receive, app_send)
                    except Exception:
                        if state["started"]:
                            raise
                        if not state["too_large"] and not state["nul"]:
                            logging.getLogger("aidaccess.errors").exception("unhandled error")
                            await _problem(
                                500, "Something went wrong on our side; the request id identifies it.", path
                            )(scope, receive, send_with_headers)
                # The app's answer replaced by the problem it could not give: a body too large, a NUL.
                if state["too_large"] and not state["started"]:
                    await _problem(413, "The request body is larger than this service accepts.", path)(
                        scope, receive, send_with_headers
                    )
                elif state["nul"] and not state["started"]:
                    await _problem(422, "Text may not contain the NUL character (U+0000).", path)(
                        scope, receive, send_with_headers
                    )
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            status = state["status"]
            counted = self.metrics.children(method, template, status)
            counted[0].inc()
            counted[1].observe(elapsed)
            # never the query string: tokens may travel there
            log_request(method, path, template, status, round(elapsed * 1000, 2))
            request_id_var.reset(token)


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# The API's form-encoded operations (OAuth 2.0); every other body is JSON.
FORM_PATHS = frozenset({"/v1/auth/token", "/v1/auth/revoke"})


def _is_json(content_type: bytes | None) -> bool:
    if not content_type:
        return False
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json" or media_type.endswith(b"+json")


def _problem(status: int, detail: str, path: str):  # noqa: ANN202
    from api.problems import problem

    return problem(status, detail, instance=path)
