"""Shared bench machinery: start servers as `make run` does, drive them with wrk, report."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-123456"


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    ratio: float | None = None  # to the bare endpoint, where the bench measured it round by round


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(core: int | str | None, args: list[str]) -> list[str]:
    if core is None or shutil.which("taskset") is None or os.cpu_count() == 1:
        return args
    return ["taskset", "-c", str(core), *args]


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited early ({process.returncode})")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server at {url} not ready")


def api_env(database_url: str | None, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIDACCESS_")}
    env["AIDACCESS_DATA_DIR"] = str(data_dir)
    env["AIDACCESS_LOG_LEVEL"] = os.environ.get("AIDACCESS_LOG_LEVEL", "INFO")
    # A handful of bench accounts write thousands of times a minute: the per-account write
    # limit (120/min by default) would turn the measurement into one of 429s.
    env["AIDACCESS_WRITE_RATE_PER_MINUTE"] = "0"
    if database_url:
        env["AIDACCESS_DATABASE_URL"] = database_url
    return env


def aidaccess(env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    subprocess.run(
        [sys.executable, "-m", "aidaccess", *args], env=env, input=stdin, text=True, check=True, capture_output=True
    )


@contextmanager
def serve_api(
    database_url: str | None,
    *,
    workers: int = 1,
    core: int | str | None = 0,
    extra_env: dict[str, str] | None = None,
    log: Path | None = None,
):
    """``log``: a file for the server's output (its JSON logs, the access log among them); default: none kept."""
    with tempfile.TemporaryDirectory(prefix="aidaccess-bench-") as tmp:
        env = {**api_env(database_url, Path(tmp)), **(extra_env or {})}
        aidaccess(env, "db", "upgrade")
        aidaccess(env, "seed", "demo", "--password-stdin", stdin=PASSWORD)
        port = free_port()
        output = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
        process = subprocess.Popen(
            pinned(core, [sys.executable, "-m", "aidaccess", "serve", "--port", str(port), "--workers", str(workers)]),
            env=env,
            stdout=output,
            stderr=output,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(f"{base}/readyz", process)
            yield base, env
        finally:
            process.terminate()
            process.wait(timeout=30)
            if log:
                output.close()


@contextmanager
def serve_bare(*, core: int | str | None = 0, workers: int = 1):
    port = free_port()
    process = subprocess.Popen(
        pinned(core, [sys.executable, "-m", "bench.serve_bare", str(port), str(workers)]),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/bare", process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def arguments(doc: str | None) -> argparse.ArgumentParser:
    """The options every bench takes; scripts add their own."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file, as make run")
    return parser


def measure(name: str, url: str, args: argparse.Namespace, headers: dict[str, str] | None = None) -> Result:
    """The median of ``args.runs`` wrk runs."""
    return median_of(
        name, [wrk(url, connections=args.connections, seconds=args.seconds, headers=headers) for _ in range(args.runs)]
    )


def measure_bare(args: argparse.Namespace) -> Result:
    with serve_bare() as base:
        return measure("bare FastAPI endpoint", f"{base}/bare", args)


def database_url_of(env: dict[str, str]) -> str:
    """The database a server started by serve_api uses."""
    return env.get("AIDACCESS_DATABASE_URL") or f"sqlite:///{env['AIDACCESS_DATA_DIR']}/aidaccess.sqlite3"


def token(base: str, email: str) -> str:
    response = httpx.post(
        f"{base}/v1/auth/token", data={"grant_type": "password", "username": email, "password": PASSWORD}
    )
    response.raise_for_status()
    return response.json()["access_token"]


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    if not match:
        raise ValueError(value)
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    url: str,
    *,
    connections: int,
    seconds: int,
    headers: dict[str, str] | None = None,
    core: int | None = 1,
    script: str | None = None,
) -> Result:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for key, value in (headers or {}).items():
        args += ["-H", f"{key}: {value}"]
    if script:
        args += ["-s", script]
    out = subprocess.run(pinned(core, [*args, url]), capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in match.groups())
    return Result(name="", rps=rps, p50_ms=p50, p99_ms=p99, requests=requests, errors=errors)


def median_of(name: str, runs: list[Result]) -> Result:
    ordered = sorted(runs, key=lambda r: r.rps)
    middle = ordered[len(ordered) // 2]
    return Result(
        name=name,
        rps=statistics.median(r.rps for r in runs),
        p50_ms=middle.p50_ms,
        p99_ms=middle.p99_ms,
        requests=sum(r.requests for r in runs),
        errors=sum(r.errors for r in runs),
    )


def report(results: list[Result], baseline: Result, out_name: str) -> None:
    print(f"{'what':44} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'x bare':>7}")
    for r in results:
        ratio = r.ratio if r.ratio is not None else r.rps / baseline.rps
        print(f"{r.name:44} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.errors:7d} {ratio:7.2f}")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (out_dir / f"{out_name}-{stamp}.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
