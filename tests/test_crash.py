"""Crash safety (issue 7, item 2): the server is killed with SIGKILL in the middle of
concurrent creates and approvals, restarted on the same database, and then every write
that was answered 2xx is there, every write whose answer never came is either wholly
there or not at all, and the audit chain verifies."""

from __future__ import annotations

import os
import queue
import signal
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from tests.server import PASSWORD, aidaccess, cli_environment, login, running_server
from tests.test_concurrency import _request_body

pytestmark = pytest.mark.e2e

CREATORS = 4
APPROVERS = 4
SUBMITTED_AHEAD = 80
KILL_AFTER_SUCCESSES = 80


@dataclass
class Outcomes:
    created: dict[str, str] = field(default_factory=dict)  # origin marker -> id, answered 201
    create_unknown: set[str] = field(default_factory=set)  # origin marker, no answer
    approved: set[str] = field(default_factory=set)  # id, answered 200
    approve_unknown: set[str] = field(default_factory=set)  # id, no answer
    refused: list[str] = field(default_factory=list)  # any other answer, with its body
    successes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    enough: threading.Event = field(default_factory=threading.Event)

    def success(self, record: Callable[[], None]) -> None:
        with self.lock:
            record()
            self.successes += 1
            if self.successes >= KILL_AFTER_SUCCESSES:
                self.enough.set()


def _create_loop(base: str, headers: dict, city_id: str, out: Outcomes, stop: threading.Event) -> None:
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        while not stop.is_set():
            marker = f"crash-{uuid.uuid4().hex}"
            body = {**_request_body(city_id), "origin_name": marker}
            body["cargo_lines"] = body["cargo_lines"] * 3  # three lines: a half-written request would show
            try:
                response = client.post("/v1/access-requests", json=body)
            except httpx.HTTPError:
                out.create_unknown.add(marker)
                return
            if response.status_code == 201:
                out.success(lambda r=response, m=marker: out.created.__setitem__(m, r.json()["id"]))
            else:
                out.refused.append(response.text)


def _approve_loop(base: str, headers: dict, ids: queue.Queue, out: Outcomes, stop: threading.Event) -> None:
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        while not stop.is_set():
            try:
                request_id = ids.get_nowait()
            except queue.Empty:
                return
            try:
                response = client.post(f"/v1/access-requests/{request_id}/approve", json={})
            except httpx.HTTPError:
                out.approve_unknown.add(request_id)
                return
            if response.status_code == 200:
                out.success(lambda i=request_id: out.approved.add(i))
            else:
                out.refused.append(response.text)


def _all_requests(base: str, headers: dict) -> list[dict]:
    items, cursor = [], None
    while True:
        params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{base}/v1/access-requests", params=params, headers=headers, timeout=30).json()
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def test_sigkill_mid_load_loses_no_answered_write_and_leaves_nothing_half_written(fresh_database, tmp_path):
    env = cli_environment(fresh_database.url, tmp_path / "data")
    assert aidaccess(env, "db", "upgrade").returncode == 0
    assert aidaccess(env, "seed", "demo", "--password-stdin", stdin=PASSWORD).returncode == 0
    out = Outcomes()
    stop = threading.Event()

    with running_server(env) as (base, process):
        partner = login(base, "partner.wfp@aidaccess.example")
        coordinator = login(base, "coordinator@aidaccess.example")
        city_id = httpx.get(f"{base}/v1/cities", params={"q": "madaya"}, headers=partner).json()["items"][0]["id"]
        ahead: queue.Queue = queue.Queue()
        submitted_ahead = []
        for _ in range(SUBMITTED_AHEAD):
            created = httpx.post(f"{base}/v1/access-requests", json=_request_body(city_id), headers=partner).json()
            assert httpx.post(f"{base}/v1/access-requests/{created['id']}/submit", headers=partner).status_code == 200
            ahead.put(created["id"])
            submitted_ahead.append(created["id"])

        threads = [
            threading.Thread(target=_create_loop, args=(base, partner, city_id, out, stop)) for _ in range(CREATORS)
        ]
        threads += [
            threading.Thread(target=_approve_loop, args=(base, coordinator, ahead, out, stop)) for _ in range(APPROVERS)
        ]
        for thread in threads:
            thread.start()
        # Killed once enough writes have succeeded, while the others are in flight.
        assert out.enough.wait(timeout=120), f"only {out.successes} writes succeeded"
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in threads)

    assert out.refused == []
    assert out.created and out.approved
    assert out.create_unknown or out.approve_unknown, "the kill should have cut some writes short"

    with running_server(env) as (base, _process):
        partner = login(base, "partner.wfp@aidaccess.example")
        coordinator = login(base, "coordinator@aidaccess.example")
        requests = {r["id"]: r for r in _all_requests(base, partner)}
        by_marker = {r["origin_name"]: r for r in requests.values()}

        # Every answered create is there, whole.
        for marker, request_id in out.created.items():
            assert by_marker[marker]["id"] == request_id
        # An unanswered create is wholly there or not at all; anything there is whole.
        for marker in out.create_unknown:
            assert marker not in by_marker or len(by_marker[marker]["cargo_lines"]) == 3
        for request in requests.values():
            if request["origin_name"].startswith("crash-"):
                assert len(request["cargo_lines"]) == 3, request
        # Every answered approval is there; an unanswered one is either done or not started.
        for request_id in out.approved:
            assert requests[request_id]["status"] == "approved"
        for request_id in out.approve_unknown:
            assert requests[request_id]["status"] in ("approved", "submitted")
        for request_id in submitted_ahead:
            assert requests[request_id]["status"] in ("approved", "submitted")
        # Each state on record has its audit event, and no event describes a write that is not there.
        for request in requests.values():
            events = httpx.get(
                f"{base}/v1/audit", params={"entity_id": request["id"], "limit": 200}, headers=coordinator
            ).json()["items"]
            actions = [e["action"] for e in events]
            assert actions.count("created") == 1
            assert actions.count("approved") == (1 if request["status"] == "approved" else 0), (
                request["status"],
                actions,
            )
        audited, cursor = set(), None
        while True:
            params = {"entity_type": "access_request", "limit": 200, **({"cursor": cursor} if cursor else {})}
            page = httpx.get(f"{base}/v1/audit", params=params, headers=coordinator).json()
            audited |= {e["entity_id"] for e in page["items"]}
            cursor = page.get("next_cursor")
            if not cursor:
                break
        assert audited == set(requests)
        print(
            f"killed after {len(out.created)} creates and {len(out.approved)} approvals answered; "
            f"{len(out.create_unknown)} creates and {len(out.approve_unknown)} approvals cut short"
        )

    verified = aidaccess(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
