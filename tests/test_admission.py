"""Admission (api.admission): requests let in in arrival order, a bounded number at once,
with their bodies received first; a bounded wait, then 503 having changed nothing."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from aidaccess.settings import Settings
from api.admission import Admission, AdmissionMiddleware, stepped_out
from api.app import UNGATED_PATHS, create_app
from api.middleware import Metrics
from auth.roles import Role
from db.engine import Database
from tests.conftest import World
from tests.test_cities import _city_body


class HeldApp:
    """An app that notes who came in (and the body it read), then answers once released."""

    def __init__(self) -> None:
        self.turn = asyncio.Event()  # what a request to /write waits for out of its place, as a write for its turn
        self.entered: list[str] = []
        self.bodies: dict[str, bytes] = {}
        self.release: dict[str, asyncio.Event] = {}

    def event(self, path: str) -> asyncio.Event:
        return self.release.setdefault(path, asyncio.Event())

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        path = scope["path"]
        self.entered.append(path)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.bodies[path] = body
        if path == "/write":
            async with stepped_out():
                await self.turn.wait()
            self.entered.append("back in: /write")
        await self.event(path).wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _scope(path: str, headers: list | None = None) -> dict:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers or [],
    }


def _whole_body(body: bytes = b"{}"):  # noqa: ANN202
    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _call(app, path: str, receive=None, headers=None) -> list[dict]:  # noqa: ANN001
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await app(_scope(path, headers), receive or _whole_body(), send)
    return sent


def _gated(
    limit: int, *, max_wait: float = 60, ungated: tuple[str, ...] = ()
) -> tuple[Admission, HeldApp, AdmissionMiddleware]:
    admission, inner = Admission(limit=limit, max_wait=max_wait), HeldApp()
    return admission, inner, AdmissionMiddleware(inner, admission=admission, ungated=ungated)


async def _write_out_of_its_place_then_a_read(app: AdmissionMiddleware) -> tuple[asyncio.Task, asyncio.Task]:
    """A write that steps out (waiting for its turn), and a read that takes its place."""
    write = asyncio.create_task(_call(app, "/write"))
    await _settle()
    read = asyncio.create_task(_call(app, "/read"))
    await _settle()
    return write, read


def _run(scenario) -> None:  # noqa: ANN001
    """A scenario that hangs (a place never given back, say) fails instead of stalling the suite."""

    async def bounded() -> None:
        async with asyncio.timeout(10):
            await scenario()

    asyncio.run(bounded())


async def _settle() -> None:
    """Let every task that can run, run (no time passes)."""
    for _ in range(20):
        await asyncio.sleep(0)


def test_requests_are_let_in_in_arrival_order_at_most_limit_at_once():
    async def scenario() -> None:
        admission, inner, app = _gated(2)
        tasks = []
        for path in ("/a", "/b", "/c", "/d", "/e"):
            tasks.append(asyncio.create_task(_call(app, path)))
            await _settle()
        assert inner.entered == ["/a", "/b"]
        assert admission.waiting == 3
        inner.event("/b").set()
        await _settle()
        assert inner.entered == ["/a", "/b", "/c"]
        inner.event("/a").set()
        await _settle()
        assert inner.entered == ["/a", "/b", "/c", "/d"]
        assert admission.waiting == 1
        for path in ("/c", "/d", "/e"):
            inner.event(path).set()
        results = await asyncio.gather(*tasks)
        assert inner.entered == ["/a", "/b", "/c", "/d", "/e"]
        assert [r[0]["status"] for r in results] == [200] * 5
        assert admission.waiting == 0

    _run(scenario)


def test_a_request_that_waits_too_long_gets_503_never_reaches_the_app_and_frees_its_place():
    async def scenario() -> None:
        admission, inner, app = _gated(1, max_wait=0.05)
        holder = asyncio.create_task(_call(app, "/held"))
        await _settle()
        refused = await _call(app, "/refused")
        assert refused[0]["status"] == 503
        headers = dict(refused[0]["headers"])
        assert headers[b"content-type"] == b"application/problem+json"
        assert headers[b"retry-after"] == b"1"
        problem = json.loads(refused[1]["body"])
        assert problem["status"] == 503 and problem["instance"] == "/refused"
        assert "nothing was done" in problem["detail"]
        assert inner.entered == ["/held"]
        assert admission.waiting == 0
        # The refused request left no claim behind: the next one is let in as soon as the place is free.
        later = asyncio.create_task(_call(app, "/later"))
        await _settle()
        assert inner.entered == ["/held"]
        inner.event("/held").set()
        inner.event("/later").set()
        assert (await holder)[0]["status"] == 200
        assert (await later)[0]["status"] == 200
        assert inner.entered == ["/held", "/later"]
        assert (admission.working, admission.waiting) == (0, 0)

    _run(scenario)


def test_a_write_waiting_for_its_turn_lends_its_place_and_comes_back_at_once_when_it_has_the_turn():
    async def scenario() -> None:
        admission, inner, app = _gated(1)
        write, read = await _write_out_of_its_place_then_a_read(app)
        assert inner.entered == ["/write", "/read"]  # the read has the write's place while the write waits
        later = asyncio.create_task(_call(app, "/later"))
        await _settle()
        inner.turn.set()
        await _settle()
        # The write has its turn and goes on at once (a turn never waits idle in the queue): two at work.
        assert inner.entered == ["/write", "/read", "back in: /write"]
        assert (admission.working, admission.waiting) == (2, 1)
        inner.event("/read").set()
        await read
        await _settle()
        # Over the limit until enough have left: the read's place is not passed on.
        assert (admission.working, admission.waiting) == (1, 1)
        assert inner.entered[-1] == "back in: /write"
        inner.event("/write").set()
        await write
        await _settle()
        assert inner.entered[-1] == "/later"
        inner.event("/later").set()
        await later
        assert (admission.working, admission.waiting) == (0, 0)

    _run(scenario)


def test_a_write_cancelled_while_out_of_its_place_leaves_the_count_right():
    async def scenario() -> None:
        admission, inner, app = _gated(1)
        write, read = await _write_out_of_its_place_then_a_read(app)
        write.cancel()
        with pytest.raises(asyncio.CancelledError):
            await write
        inner.event("/read").set()
        await read
        assert (admission.working, admission.waiting) == (0, 0)
        after = asyncio.create_task(_call(app, "/after"))
        await _settle()
        assert inner.entered[-1] == "/after"
        inner.event("/after").set()
        await after

    _run(scenario)


def test_a_body_still_arriving_holds_no_place_and_reaches_the_app_whole():
    async def scenario() -> None:
        _, inner, app = _gated(1)
        rest_sent = asyncio.Event()
        chunks = [
            {"type": "http.request", "body": b'{"name": ', "more_body": True},
            {"type": "http.request", "body": b'"Aleppo"}', "more_body": False},
        ]

        async def slow_receive() -> dict:
            if len(chunks) == 1:
                await rest_sent.wait()
            return chunks.pop(0)

        slow = asyncio.create_task(_call(app, "/slow", slow_receive, [(b"transfer-encoding", b"chunked")]))
        await _settle()
        fast = asyncio.create_task(_call(app, "/fast"))
        await _settle()
        assert inner.entered == ["/fast"]
        inner.event("/fast").set()
        assert (await fast)[0]["status"] == 200
        rest_sent.set()
        inner.event("/slow").set()
        assert (await slow)[0]["status"] == 200
        assert inner.entered == ["/fast", "/slow"]
        assert inner.bodies["/slow"] == b'{"name": "Aleppo"}'

    _run(scenario)


def test_sign_in_the_probes_and_the_metrics_are_never_queued():
    async def scenario() -> None:
        admission, inner, app = _gated(1, ungated=UNGATED_PATHS)
        held = asyncio.create_task(_call(app, "/v1/cities"))
        await _settle()
        queued = asyncio.create_task(_call(app, "/v1/access-requests"))
        ungated = [asyncio.create_task(_call(app, path)) for path in UNGATED_PATHS]
        await _settle()
        assert inner.entered == ["/v1/cities", *UNGATED_PATHS]
        assert admission.waiting == 1
        for path in (*UNGATED_PATHS, "/v1/cities", "/v1/access-requests"):
            inner.event(path).set()
        await asyncio.gather(held, queued, *ungated)
        assert inner.entered[-1] == "/v1/access-requests"

    _run(scenario)


@pytest.fixture
def full(services, session):  # noqa: ANN001, ANN201
    """The app with no place free: every queued request waits out its (short) wait."""
    services.settings = services.settings.model_copy(update={"request_queue_seconds": 0.05})
    app = create_app(services=services)
    app.state.admission.limit = 0
    with TestClient(app, raise_server_exceptions=False, client=("127.0.0.1", 50000)) as client:
        yield client, World(session=session, client=client)


def test_a_busy_process_answers_503_problem_with_its_headers_and_writes_nothing(full, audit_count):
    client, world = full
    coordinator = world.headers(world.user(Role.coordinator))  # sign-in is never queued
    before = audit_count()
    refused = client.post("/v1/cities", json=_city_body(name="Never written"), headers=coordinator)
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["x-content-type-options"] == "nosniff"
    assert refused.json()["request_id"] == refused.headers["x-request-id"]
    assert audit_count() == before
    assert client.get("/healthz").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'aidaccess_http_requests_total{method="POST",route="unmatched",status="503"} 1.0' in metrics.text
    assert "aidaccess_requests_waiting 0.0" in metrics.text


def test_metrics_show_the_requests_waiting():
    async def scenario() -> None:
        metrics = Metrics()
        admission, inner, app = _gated(1)
        metrics.watch_admission(admission)
        paths = ["/held", "/a", "/b", "/c", "/d"]
        tasks = [asyncio.create_task(_call(app, path)) for path in paths]
        await _settle()
        assert metrics.registry.get_sample_value("aidaccess_requests_waiting") == 4
        for path in paths:
            inner.event(path).set()
        await asyncio.gather(*tasks)
        assert metrics.registry.get_sample_value("aidaccess_requests_waiting") == 0

    _run(scenario)


def test_every_operation_that_can_be_queued_or_reach_the_database_declares_503(app):
    schema = app.openapi()
    operations = [(path, method) for path, item in schema["paths"].items() for method in item]
    assert len(operations) > 50
    declared = {(path, method) for path, method in operations if "503" in schema["paths"][path][method]["responses"]}
    assert set(operations) - declared == {("/healthz", "get"), ("/metrics", "get")}


def test_the_places_and_the_wait_come_from_the_settings(services):
    services.settings = services.settings.model_copy(update={"concurrent_requests": 3, "request_queue_seconds": 4.5})
    admission = create_app(services=services).state.admission
    assert (admission.limit, admission.max_wait) == (3, 4.5)


@pytest.mark.parametrize(
    ("url", "configured", "expected"),
    [
        ("sqlite:///{tmp}/a.sqlite3", None, 2),
        ("postgresql+psycopg://u@h/db", None, 8),
        ("sqlite:///{tmp}/a.sqlite3", 5, 5),
    ],
)
def test_the_places_follow_the_engine_unless_configured(tmp_path, url, configured, expected):
    settings = Settings(
        _env_file=None, data_dir=tmp_path, database_url=url.format(tmp=tmp_path), concurrent_requests=configured
    )
    assert settings.resolved_concurrent_requests == expected


# ---- a write's turn: waited for in its place, out of it past the patience ------------------


class _Impatience:
    """What the API passes as ``impatient``: notes when a wait stepped out, and when it came back."""

    def __init__(self) -> None:
        self.out = asyncio.Event()
        self.back = False

    def __call__(self):  # noqa: ANN204
        impatience = self

        class _Out:
            async def __aenter__(self) -> None:
                impatience.out.set()

            async def __aexit__(self, *exc: object) -> None:
                impatience.back = True

        return _Out()


@pytest.fixture
def database(tmp_path):  # noqa: ANN001, ANN201
    database = Database(f"sqlite:///{tmp_path}/turns.sqlite3", pool_size=2)
    assert database.writers == 1
    yield database
    database.dispose()


def test_a_short_wait_for_the_turn_is_waited_in_place(database):
    async def scenario() -> None:
        impatience = _Impatience()
        held = asyncio.Event()
        async with database.writer_turn(impatient=impatience):
            waiter = asyncio.create_task(_take_turn(database, impatience, held, patience=60))
            await _settle()
            assert database.writes_waiting == 1
        await waiter
        assert held.is_set() and not impatience.out.is_set()

    _run(scenario)


def test_a_long_wait_for_the_turn_steps_out_and_keeps_its_place_in_line(database):
    async def scenario() -> None:
        impatience = _Impatience()
        first, second = asyncio.Event(), asyncio.Event()
        async with database.writer_turn(impatient=impatience):
            impatient = asyncio.create_task(_take_turn(database, impatience, first, patience=0.01))
            await impatience.out.wait()  # it gave its place up, still waiting for the turn
            patient = asyncio.create_task(_take_turn(database, _Impatience(), second, patience=60))
            await _settle()
            assert not impatience.back and database.writes_waiting == 2
        await impatient
        assert impatience.back and first.is_set() and not second.is_set()  # in the order they asked
        await patient
        assert second.is_set() and database.writes_waiting == 0

    _run(scenario)


def test_a_wait_for_the_turn_cancelled_out_of_place_leaves_no_turn_taken(database):
    async def scenario() -> None:
        impatience = _Impatience()
        async with database.writer_turn(impatient=impatience):
            waiter = asyncio.create_task(_take_turn(database, impatience, asyncio.Event(), patience=0.01))
            await impatience.out.wait()
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert impatience.back
        assert database.writes_waiting == 0
        async with asyncio.timeout(5):  # the one turn is free again
            async with database.writer_turn(impatient=_Impatience()):
                pass

    _run(scenario)


async def _take_turn(database: Database, impatience: _Impatience, held: asyncio.Event, *, patience: float) -> None:
    async with database.writer_turn(impatient=impatience, patience=patience):
        held.set()


def test_waiters_that_give_up_together_leave_the_queue_clean():
    """Two waiters time out in the same instant as a place frees: whichever way the wake-ups and
    the leave interleave, nobody is let in twice, nobody is lost, and the place passes on."""

    async def scenario() -> None:
        admission, inner, app = _gated(1)
        held = asyncio.create_task(_call(app, "/held"))
        await _settle()
        quitters = [asyncio.create_task(_call(app, f"/quit{i}")) for i in range(2)]
        stayer = asyncio.create_task(_call(app, "/stay"))
        await _settle()
        inner.event("/held").set()  # woken first, so its leave runs before the cancelled waiters wake
        for task in quitters:
            task.cancel()
        await held
        for task in quitters:
            with pytest.raises(asyncio.CancelledError):
                await task
        await _settle()
        assert inner.entered == ["/held", "/stay"]
        inner.event("/stay").set()
        await stayer
        assert (admission.working, admission.waiting) == (0, 0)

    _run(scenario)
