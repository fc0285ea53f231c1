"""CPU per request, in-process: the app called through ASGI, no server, no network.

    .venv/bin/python bench/bench_cpu.py [list50 list1 create snapshot snapshot304 picture me] [--batches 20]
    valgrind --tool=callgrind .venv/bin/python bench/bench_cpu.py list50 --fixed 100   # and --fixed 0

Where wrk on a noisy machine cannot tell a 10 % change from the noise, these can. For each operation
it prints the least CPU per request (``time.process_time``) over batches of 50, then the user and
system CPU and the wall time per request over 200 more (``getrusage``). With ``--fixed N`` it makes N
requests of each operation and prints nothing: under callgrind, the instructions of a run with
``--fixed 100`` less those of one with ``--fixed 0``, over 100, are one request's, repeatably.

The database is a fresh SQLite file with the demo data, or PostgreSQL (``--database-url``), as
``make run`` leaves it, plus 100 access requests of the partner's, so a list of 50 is full.
Compare two versions of the code by running each from its own checkout, alternately.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_load import request_body  # noqa: E402
from bench.common import PASSWORD, aidaccess, api_env  # noqa: E402

OPERATIONS = ("list50", "list1", "create", "snapshot", "snapshot304", "picture", "me")
Call = tuple[str, str, list[tuple[str, str]], bytes]


def scope(method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> dict:
    path, _, query = target.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers]
        + [(b"host", b"bench"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


async def call(app, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"") -> dict:  # noqa: ANN001
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        return {}

    answer: dict = {"body": b""}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            answer["status"], answer["headers"] = message["status"], dict(message["headers"])
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(scope(method, target, headers, body), receive, send)
    return answer


async def operations(app) -> dict[str, Call]:  # noqa: ANN001
    async def bearer(email: str) -> list[tuple[str, str]]:
        form = f"grant_type=password&username={email}&password={PASSWORD}".encode()
        answer = await call(
            app, "POST", "/v1/auth/token", [("content-type", "application/x-www-form-urlencoded")], form
        )
        return [("authorization", f"Bearer {json.loads(answer['body'])['access_token']}")]

    partner = await bearer("partner.wfp@aidaccess.example")
    coordinator = await bearer("coordinator@aidaccess.example")
    cities = json.loads((await call(app, "GET", "/v1/cities?limit=50", coordinator))["body"])["items"]
    writing = [*partner, ("content-type", "application/json")]
    body = json.dumps(request_body(cities[0]["id"])).encode()
    for _ in range(100):
        created = await call(app, "POST", "/v1/access-requests", writing, body)
        assert created["status"] == 201, created
    etag = (await call(app, "GET", "/v1/access-snapshot", coordinator))["headers"][b"etag"].decode()
    return {
        "list50": ("GET", "/v1/access-requests?limit=50", partner, b""),
        "list1": ("GET", "/v1/access-requests?limit=1", partner, b""),
        "create": ("POST", "/v1/access-requests", writing, body),
        "snapshot": ("GET", "/v1/access-snapshot", coordinator, b""),
        "snapshot304": ("GET", "/v1/access-snapshot", [*coordinator, ("if-none-match", etag)], b""),
        "picture": ("GET", f"/v1/cities/{cities[3]['id']}/access", coordinator, b""),
        "me": ("GET", "/v1/me", partner, b""),
    }


async def measure(app, names: list[str], batches: int, fixed: int | None) -> None:  # noqa: ANN001
    async with app.router.lifespan_context(app):
        calls = await operations(app)
        for name in names:
            method, target, headers, body = calls[name]
            if fixed is not None:
                for _ in range(fixed):
                    await call(app, method, target, headers, body)
                continue
            first = await call(app, method, target, headers, body)
            assert first["status"] in (200, 201, 304), (name, first)
            least = float("inf")
            for _ in range(batches):
                start = time.process_time()
                for _ in range(50):
                    await call(app, method, target, headers, body)
                least = min(least, (time.process_time() - start) / 50)
            before, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            for _ in range(200):
                await call(app, method, target, headers, body)
            after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall
            print(
                f"{name:12s} least {least * 1000:.3f} ms   200 more, each: user {(after.ru_utime - before.ru_utime) * 5:.3f}"
                f" sys {(after.ru_stime - before.ru_stime) * 5:.3f} wall {wall * 5:.3f} ms",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("operations", nargs="*", help=f"of {', '.join(OPERATIONS)} (default: all)")
    parser.add_argument("--batches", type=int, default=20, help="of 50 requests; the least is kept")
    parser.add_argument(
        "--fixed", type=int, default=None, help="make this many requests of each, print nothing (callgrind)"
    )
    parser.add_argument("--database-url", default=None, help="an empty database; default: a fresh SQLite file")
    args = parser.parse_args()
    if unknown := set(args.operations) - set(OPERATIONS):
        parser.error(f"unknown operations: {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="aidaccess-cpu-") as tmp:
        env = {**api_env(args.database_url, Path(tmp)), "AIDACCESS_LOG_LEVEL": "WARNING"}
        aidaccess(env, "db", "upgrade")
        aidaccess(env, "seed", "demo", "--password-stdin", stdin=PASSWORD)
        os.environ.update(env)
        from api.app import create_app

        asyncio.run(measure(create_app(), list(args.operations or OPERATIONS), args.batches, args.fixed))


if __name__ == "__main__":
    main()
