"""The access snapshot for 14 cities (the demo) and for 2,000 (generated): full JSON GET,
conditional GET (304), and the cost of a render that no cache can answer (a new `as_of`
each time), at 64 connections for the first two.

    .venv/bin/python bench/bench_snapshot.py [--seconds 10] [--runs 3] [--cities 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Result, arguments, database_url_of, measure, measure_bare, report, serve_api, token  # noqa: E402


def add_cities(database_url: str, count: int, data_dir: Path) -> None:
    """Generated cities, each with two designations, written the way the API writes them (their
    audit events sealed with the server's key, kept in its data directory)."""
    from db.engine import Database
    from workflow import audit
    from workflow.audit import Actor
    from workflow.cities import create_city, record_designation

    audit.set_seal_key((data_dir / "audit_key").read_text().strip())
    database = Database(database_url, pool_size=1)
    session = database.session(write=True)
    actor = Actor.system("bench")
    start = datetime(2016, 1, 1, tzinfo=UTC)
    for i in range(count):
        city = create_city(
            session=session,
            actor=actor,
            data={
                "name": f"Generated {i:05d}",
                "name_ar": None,
                "aliases": [f"Gen {i}"],
                "pcode": f"C{100000 + i}",
                "adm1_pcode": f"SY{i % 14 + 1:02d}",
                "adm1_name": "Generated",
                "latitude": 32.5 + (i % 500) / 100,
                "longitude": 35.8 + (i // 500) / 10,
                "population": 1000 + i,
            },
        )
        record_designation(
            session=session,
            actor=actor,
            city_id=city.id,
            data={
                "status": "hard_to_reach",
                "besieged_by": None,
                "severity": 3,
                "effective_from": start,
                "reason": "generated",
                "source": "bench",
            },
        )
        record_designation(
            session=session,
            actor=actor,
            city_id=city.id,
            data={
                "status": "besieged" if i % 3 == 0 else "accessible",
                "besieged_by": "generated" if i % 3 == 0 else None,
                "severity": i % 6,
                "effective_from": start + timedelta(days=100 + i % 200),
                "reason": "generated",
                "source": "bench",
            },
        )
    session.commit()
    session.close()
    database.dispose()


def cold_renders(base: str, headers: dict[str, str], n: int = 30) -> tuple[float, float]:
    """Sequential renders with a different as_of each (no cache can answer): p50 and p99 ms."""
    times = []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for i in range(n):
            as_of = (datetime(2017, 1, 1, tzinfo=UTC) + timedelta(minutes=i)).isoformat()
            started = time.perf_counter()
            response = client.get("/v1/access-snapshot", params={"as_of": as_of})
            times.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def measure_snapshot(base: str, label: str, args: argparse.Namespace, headers: dict[str, str]) -> list[Result]:
    url = f"{base}/v1/access-snapshot"
    etag = httpx.get(url, headers=headers).headers["etag"]
    full = measure(f"snapshot JSON, {label}", url, args, headers)
    conditional = measure(f"snapshot 304, {label}", url, args, {**headers, "If-None-Match": etag})
    p50, p99 = cold_renders(base, headers)
    print(f"{label}: uncached render (new as_of each, one connection): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    return [full, conditional]


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--cities", type=int, default=2000)
    args = parser.parse_args()

    bare = measure_bare(args)
    results = [bare]
    with serve_api(args.database_url) as (base, env):
        headers = {"Authorization": f"Bearer {token(base, 'coordinator@aidaccess.example')}"}
        results += measure_snapshot(base, "14 cities", args, headers)
        database_url = database_url_of(env)
        add_cities(database_url, args.cities - 14, Path(env["AIDACCESS_DATA_DIR"]))
        headers = {"Authorization": f"Bearer {token(base, 'coordinator@aidaccess.example')}"}
        results += measure_snapshot(base, f"{args.cities} cities", args, headers)
    report(results, bare, "snapshot")


if __name__ == "__main__":
    main()
