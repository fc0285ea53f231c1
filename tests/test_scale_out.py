"""Scale-out (issue 7, item 3): two `aidaccess serve` processes and two `aidaccess worker`
processes on one PostgreSQL. Clients alternate between the servers; sign-in throttling,
idempotency keys, ETags and the change feed hold across them, and no webhook is
delivered twice."""

from __future__ import annotations

import itertools
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.conftest import PG_URL
from tests.server import PASSWORD, aidaccess, cli_environment, event_positions, login, running_server
from tests.test_concurrency import _request_body

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not PG_URL, reason="several processes writing at once need PostgreSQL (SQLite serves one)"),
]

WRITES = 40


class Receiver:
    """Counts deliveries by webhook-id, from any number of workers at once."""

    def __init__(self) -> None:
        self.ids: Counter[str] = Counter()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["content-length"]))
                with receiver.lock:
                    receiver.ids[self.headers["webhook-id"]] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:  # noqa: ANN002
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def running_worker(env: dict[str, str]) -> Iterator[subprocess.Popen]:
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "-m", "aidaccess", "worker", "--interval", "0.05"], env=env, stdout=log, stderr=log
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.seek(0)
        output = log.read().decode(errors="replace")
        log.close()
        assert "Traceback" not in output, output


@pytest.fixture
def cluster(fresh_database, tmp_path):
    env = cli_environment(fresh_database.url, tmp_path / "data")
    assert aidaccess(env, "db", "upgrade").returncode == 0
    assert aidaccess(env, "seed", "demo", "--password-stdin", stdin=PASSWORD).returncode == 0
    receiver = Receiver()
    with ExitStack() as stack:
        # One data directory, so both servers sign with the same development key, as
        # production servers share AIDACCESS_SECRET_KEY.
        a, _ = stack.enter_context(running_server(env))
        b, _ = stack.enter_context(running_server(env))
        workers = [stack.enter_context(running_worker(env)) for _ in range(2)]
        yield [a, b], env, receiver, workers
    receiver.close()


def test_two_servers_and_two_workers_share_one_truth(cluster):
    servers, env, receiver, workers = cluster
    a, b = servers
    alternate = itertools.cycle(servers)

    # Sign-in throttling counts failures made on either server.
    for _ in range(5):
        refused = httpx.post(
            f"{next(alternate)}/v1/auth/token",
            data={"grant_type": "password", "username": "observer@aidaccess.example", "password": "wrong"},
        )
        assert refused.status_code == 401
    for server in servers:
        throttled = httpx.post(
            f"{server}/v1/auth/token",
            data={"grant_type": "password", "username": "observer@aidaccess.example", "password": PASSWORD},
        )
        assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0

    # A token from one server is good on the other.
    partner = login(a, "partner.wfp@aidaccess.example")
    coordinator = login(b, "coordinator@aidaccess.example")
    city_id = httpx.get(f"{b}/v1/cities", params={"q": "madaya"}, headers=partner).json()["items"][0]["id"]

    subscribed = httpx.post(
        f"{a}/v1/webhooks",
        json={"url": receiver.url, "event_types": ["access_request.submitted", "access_request.approved"]},
        headers=coordinator,
    )
    assert subscribed.status_code == 201, subscribed.text
    feed_start = httpx.get(f"{b}/v1/events", headers=coordinator).json()["next_cursor"]

    # An idempotency key used on one server is honoured on the other.
    key = {"Idempotency-Key": f"scale-{uuid.uuid4().hex}"}
    body = _request_body(city_id)
    first = httpx.post(f"{a}/v1/access-requests", json=body, headers={**partner, **key})
    again = httpx.post(f"{b}/v1/access-requests", json=body, headers={**partner, **key})
    assert first.status_code == 201 and again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    # The same key with another body is refused on either server, not replayed.
    other = httpx.post(f"{a}/v1/access-requests", json={**body, "trucks": 99}, headers={**partner, **key})
    assert other.status_code == 422

    # A snapshot ETag from one server is the other's too, and both see a change made on either.
    snap_a = httpx.get(f"{a}/v1/access-snapshot", headers=coordinator)
    assert (
        httpx.get(
            f"{b}/v1/access-snapshot", headers={**coordinator, "If-None-Match": snap_a.headers["etag"]}
        ).status_code
        == 304
    )
    partner_snap = httpx.get(f"{a}/v1/access-snapshot", headers=partner).headers["etag"]

    # Writes through both servers at once, while a poller reads the feed alternating between them.
    request_ids = []
    for _ in range(WRITES // 2):
        created = httpx.post(
            f"{next(alternate)}/v1/access-requests", json=_request_body(city_id), headers=partner
        ).json()
        request_ids.append(created["id"])
    seen: list[int] = []
    cursor = feed_start
    stop = threading.Event()

    def poll() -> None:
        nonlocal cursor
        servers_cycle = itertools.cycle(servers)
        while True:
            done = stop.is_set()
            page = httpx.get(
                f"{next(servers_cycle)}/v1/events", params={"after": cursor, "limit": 7}, headers=coordinator
            ).json()
            seen.extend(item["id"] for item in page["items"])
            cursor = page["next_cursor"]
            if done and not page["items"]:
                return

    poller = threading.Thread(target=poll)
    poller.start()

    def submit_and_approve(request_id: str, server: str, other: str) -> None:
        assert (
            httpx.post(f"{server}/v1/access-requests/{request_id}/submit", headers=partner, timeout=30).status_code
            == 200
        )
        assert (
            httpx.post(
                f"{other}/v1/access-requests/{request_id}/approve", json={}, headers=coordinator, timeout=30
            ).status_code
            == 200
        )

    writers = [
        threading.Thread(target=submit_and_approve, args=(rid, servers[i % 2], servers[(i + 1) % 2]))
        for i, rid in enumerate(request_ids)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    stop.set()
    poller.join(timeout=60)

    trail = []
    page_cursor = None
    while True:
        params = {"limit": 200, **({"cursor": page_cursor} if page_cursor else {})}
        page = httpx.get(f"{a}/v1/audit", params=params, headers=coordinator).json()
        trail += [(e["id"], e["action"]) for e in page["items"]]
        page_cursor = page.get("next_cursor")
        if not page_cursor:
            break
    # The feed saw every event after its start once, in commit order.
    seen = event_positions(env, seen)
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    first_seen = min(seen)
    assert seen == sorted(e for e, _ in trail if e >= first_seen), [
        t for t in trail if t[0] >= first_seen and t[0] not in seen
    ]
    assert len(seen) >= 2 * len(request_ids)

    # After the writes, the snapshot's ETag moved on both servers alike (for the coordinator, who reads every
    # convoy; a partner's moves by the day only, tests/test_convoy_secrecy.py).
    snap_after = httpx.get(f"{b}/v1/access-snapshot", headers=coordinator)
    assert snap_after.headers["etag"] != snap_a.headers["etag"]
    assert (
        httpx.get(
            f"{a}/v1/access-snapshot", headers={**coordinator, "If-None-Match": snap_after.headers["etag"]}
        ).status_code
        == 304
    )
    assert httpx.get(f"{b}/v1/access-snapshot", headers=partner).headers["etag"] == partner_snap

    # Both workers ran; every event reached the subscriber exactly once.
    expected = 2 * len(request_ids)
    deadline = time.monotonic() + 60
    while sum(receiver.ids.values()) < expected and time.monotonic() < deadline:
        time.sleep(0.1)  # waiting for deliveries to arrive, not timing a behaviour
    assert all(worker.poll() is None for worker in workers)
    assert len(receiver.ids) == expected
    assert max(receiver.ids.values()) == 1, [k for k, n in receiver.ids.items() if n > 1]
    assert aidaccess(env, "audit", "verify").returncode == 0
