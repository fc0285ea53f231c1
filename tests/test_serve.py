"""``aidaccess serve --workers N``: a listening socket per worker, on one port, so connections
opened together spread over the workers instead of landing on whichever woke first."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.server import PASSWORD, aidaccess, cli_environment, running_server

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads sockets from Linux's /proc")

LISTEN, ESTABLISHED = "0A", "01"


def _tcp(state: str) -> dict[int, int]:
    """The TCP sockets in ``state``: inode -> local port."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == state:
                found[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
    return found


def _sockets(port: int, state: str) -> set[int]:
    """Inodes of the TCP sockets in ``state`` whose local port is ``port``."""
    return {inode for inode, local in _tcp(state).items() if local == port}


def _held_by(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` holds."""
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            held.add(int(target[len("socket:[") : -1]))
    return held


def _children(pid: int) -> list[int]:
    """The supervisor's worker processes (multiprocessing's resource tracker, if any, is not one)."""
    workers = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(int(child))
        except FileNotFoundError:  # gone meanwhile
            continue
    return workers


def _workers_listening(port: int, supervisor: int) -> dict[int, set[int]]:
    """Each worker's listening sockets on ``port``."""
    listening = _sockets(port, LISTEN)
    return {pid: _held_by(pid) & listening for pid in _children(supervisor)}


def _until(condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)  # polling a process's state, not timing a behaviour
    raise AssertionError("not reached in time")


@pytest.fixture
def env(fresh_database, tmp_path):
    env = cli_environment(fresh_database.url, tmp_path / "data")
    assert aidaccess(env, "db", "upgrade").returncode == 0
    assert aidaccess(env, "seed", "demo", "--password-stdin", stdin=PASSWORD).returncode == 0
    return env


def test_each_worker_listens_on_its_own_socket_and_connections_reach_both(env):
    with running_server(env, workers=2) as (base, process):
        port = int(base.rsplit(":", 1)[1])
        by_worker = _until(
            lambda: (
                (found := _workers_listening(port, process.pid))
                and len(found) == 2
                and all(len(s) == 1 for s in found.values())
                and found
            )
        )
        # Two sockets, one each; the supervisor's own is bound, never listening.
        assert len(set.union(*by_worker.values())) == 2
        assert not _held_by(process.pid) & _sockets(port, LISTEN)

        # 32 connections opened together, each used once: both workers hold some of them
        # (all on one worker by chance: 2 in 2^32).
        clients = [httpx.Client(base_url=base) for _ in range(32)]
        try:
            assert all(c.get("/healthz").status_code == 200 for c in clients)
            established = _sockets(port, ESTABLISHED)
            per_worker = {pid: len(_held_by(pid) & established) for pid in by_worker}
            assert sum(per_worker.values()) == 32
            assert all(count > 0 for count in per_worker.values()), per_worker
        finally:
            for c in clients:
                c.close()


def test_a_worker_killed_is_replaced_with_a_socket_of_its_own(env):
    with running_server(env, workers=2) as (base, process):
        port = int(base.rsplit(":", 1)[1])
        first = _until(
            lambda: (
                (found := _workers_listening(port, process.pid)) and len(found) == 2 and all(found.values()) and found
            )
        )
        victim = next(iter(first))
        os.kill(victim, signal.SIGKILL)
        replaced = _until(
            lambda: (
                (found := _workers_listening(port, process.pid))
                and victim not in found
                and len(found) == 2
                and all(found.values())
                and found
            )
        )
        assert len(set.union(*replaced.values())) == 2
        assert all(httpx.get(f"{base}/readyz").status_code == 200 for _ in range(10))


def test_serving_on_a_port_taken_by_another_program_stops_at_once(env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "aidaccess", "serve", "--port", str(port), "--workers", "2"],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 3, (
        result.stderr
    )  # uvicorn's STARTUP_FAILURE, not a supervisor restarting workers forever
    assert "cannot listen" in result.stdout + result.stderr


def test_a_free_port_chosen_by_the_system_is_the_one_every_worker_listens_on(env):
    # --port 0: the supervisor's socket resolves it, and the workers bind that port, not one each.
    log = Path(env["AIDACCESS_DATA_DIR"]) / "serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "aidaccess", "serve", "--port", "0", "--workers", "2"],
            env=env,
            stdout=output,
            stderr=output,
        )
    try:

        def ports() -> set[int] | None:
            listening = _tcp(LISTEN)
            try:
                workers = _children(process.pid)
            except FileNotFoundError:
                return None
            found = [listening[i] for pid in workers for i in _held_by(pid) if i in listening]
            return set(found) if len(workers) == 2 and len(found) == 2 else None

        chosen = _until(ports)
        assert len(chosen) == 1
        assert httpx.get(f"http://127.0.0.1:{chosen.pop()}/readyz").status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
