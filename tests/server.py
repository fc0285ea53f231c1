"""Running the real server in a subprocess, for tests that need real commits and concurrency."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

PASSWORD = "operator-password-123"


# The logs of the servers running now: a test that fails while a fixture's server runs gets their
# tails in its report (conftest.pytest_runtest_makereport).
RUNNING_LOGS: list[IO[bytes]] = []


def log_tail(log: IO[bytes], size: int = 4096) -> str:
    """The end of a log the server still writes to: pread, so the offset the server shares stays put."""
    end = os.fstat(log.fileno()).st_size
    return os.pread(log.fileno(), size, max(0, end - size)).decode(errors="replace")


def cli_environment(database_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIDACCESS_")}
    env.update(
        AIDACCESS_DATABASE_URL=database_url,
        AIDACCESS_DATA_DIR=str(data_dir),
        AIDACCESS_ARGON2_TIME_COST="1",
        AIDACCESS_ARGON2_MEMORY_KIB="1024",
        AIDACCESS_ARGON2_PARALLELISM="1",
        # These tests drive hundreds of writes per account; tests/test_limits.py covers the limit.
        AIDACCESS_WRITE_RATE_PER_MINUTE="0",
    )
    return env


def aidaccess(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "aidaccess", *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # waiting for a process to listen, not timing a behaviour
    raise AssertionError("server did not become ready")


@contextmanager
def running_server(
    env: dict[str, str], *, workers: int = 1, command: list[str] | None = None, cwd: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``command`` is the program to run (``python -m aidaccess`` from this checkout by default)."""
    port = free_port()
    # Logs go to a file: a pipe nobody reads fills up (64 KiB) and then blocks the server.
    log = tempfile.TemporaryFile()
    RUNNING_LOGS.append(log)
    process = subprocess.Popen(
        [*(command or [sys.executable, "-m", "aidaccess"]), "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=log,
        stderr=log,
        cwd=cwd,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        yield base, process
    except BaseException:
        print("server log (last 4 KiB):", log_tail(log), sep="\n")  # shown with a failure inside the with-block
        raise
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        RUNNING_LOGS.remove(log)
        log.close()


def event_positions(env: dict[str, str], names: list[str]) -> list[int]:
    """The audit trail's ids of the events a server named (feed, webhooks): the tests can tell their
    order, with the server's audit key, which its clients cannot."""
    from auth.opaque import SequenceCipher

    key = env.get("AIDACCESS_AUDIT_KEY") or (Path(env["AIDACCESS_DATA_DIR"]) / "audit_key").read_text().strip()
    cipher = SequenceCipher(key, "event ids")
    return [cipher.reveal(name) for name in names]


def login(base: str, email: str, password: str = PASSWORD) -> dict[str, str]:
    response = httpx.post(
        f"{base}/v1/auth/token", data={"grant_type": "password", "username": email, "password": password}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}
