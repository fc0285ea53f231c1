"""The console's board (issue 35) beside the snapshot it is drawn from: throughput at 64 connections,
full and conditional (304), and the server's time per request on one connection (no queueing), for
the demo's 14 cities and, with ``--cities``, a country's worth.

    .venv/bin/python bench/bench_console.py [--seconds 10] [--runs 3] [--cities 300] [--database-url URL]

The board is rendered for each request that is not a 304 (a page, in the caller's language, with its
sign-out form's CSRF token): the snapshot's JSON is kept by its ETag and sent again as bytes.
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_snapshot import add_cities  # noqa: E402
from bench.common import PASSWORD, Result, arguments, database_url_of, measure, measure_bare, report, serve_api, token  # noqa: E402

OBSERVER = "observer@aidaccess.example"


def console_cookie(base: str, email: str) -> str:
    with httpx.Client(base_url=base) as client:
        form = client.get("/sign-in")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        signed = client.post("/sign-in", data={"username": email, "password": PASSWORD, "csrf": csrf})
        assert signed.status_code == 303, signed.text
        return f"aidaccess_console={client.cookies['aidaccess_console']}"


def one_at_a_time(url: str, headers: dict[str, str], n: int = 200) -> tuple[float, float]:
    """p50 and p99 ms of ``n`` sequential GETs (after 20 to warm up): the server's time, not a queue's."""
    times = []
    with httpx.Client(headers=headers, timeout=30) as client:
        for i in range(n + 20):
            started = time.perf_counter()
            response = client.get(url)
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code in (200, 304), response.status_code
            if i >= 20:
                times.append(elapsed)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def measure_pair(base: str, label: str, args, cookie: str, bearer: dict[str, str]) -> list[Result]:  # noqa: ANN001
    board_headers = {"Cookie": cookie}
    board_etag = httpx.get(f"{base}/", headers=board_headers).headers["etag"]
    snapshot_etag = httpx.get(f"{base}/v1/access-snapshot", headers=bearer).headers["etag"]
    results = [
        measure(f"board page, {label}", f"{base}/", args, board_headers),
        measure(f"board 304, {label}", f"{base}/", args, {**board_headers, "If-None-Match": board_etag}),
        measure(f"snapshot JSON, {label}", f"{base}/v1/access-snapshot", args, bearer),
        measure(
            f"snapshot 304, {label}", f"{base}/v1/access-snapshot", args, {**bearer, "If-None-Match": snapshot_etag}
        ),
    ]
    for name, url, headers in (
        ("board page", f"{base}/", board_headers),
        ("snapshot JSON", f"{base}/v1/access-snapshot", bearer),
        ("board 304", f"{base}/", {**board_headers, "If-None-Match": board_etag}),
    ):
        p50, p99 = one_at_a_time(url, headers)
        print(f"{label}: {name}, one connection: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    size = len(httpx.get(f"{base}/", headers=board_headers).content)
    print(f"{label}: board page {size:,} bytes")
    return results


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--cities", type=int, default=300)
    args = parser.parse_args()
    bare = measure_bare(args)
    results = [bare]
    with serve_api(args.database_url) as (base, env):
        bearer = {"Authorization": f"Bearer {token(base, OBSERVER)}"}
        results += measure_pair(base, "14 cities", args, console_cookie(base, OBSERVER), bearer)
        if args.cities > 14:
            add_cities(database_url_of(env), args.cities - 14, Path(env["AIDACCESS_DATA_DIR"]))
            results += measure_pair(base, f"{args.cities} cities", args, console_cookie(base, OBSERVER), bearer)
    report(results, bare, "console")


if __name__ == "__main__":
    main()
