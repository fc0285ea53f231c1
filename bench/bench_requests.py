"""Access request lists over 100,000 requests, and the approve action.

    .venv/bin/python bench/bench_requests.py [--rows 100000] [--seconds 10] [--runs 3] [--database-url URL]

Lists 50 requests as a partner (its organization's) and as a coordinator (all), on the
first page and on the page after 50,000 rows (keyset pagination: both should cost the
same), at 64 connections with wrk. Then approves 2,000 submitted requests from 32
concurrent clients and reports approvals per second and p99.
"""

from __future__ import annotations

import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Result, arguments, database_url_of, measure, measure_bare, report, serve_api, token  # noqa: E402


def generate(database_url: str, rows: int, *, submitted: int = 0) -> None:
    """Requests and their cargo lines, written in bulk (the workflow is measured separately)."""
    from sqlalchemy import insert, select

    from db.engine import Database
    from db.models import AccessRequest, CargoLine, City, Organization
    from db.types import uuid7

    database = Database(database_url, pool_size=1)
    with database.session(write=True) as session:
        organizations = list(
            session.execute(
                select(Organization.id, Organization.name).where(
                    Organization.kind.in_(["un_agency", "red_cross_red_crescent"])
                )
            ).all()
        )
        cities = list(session.execute(select(City.id)).scalars())
        now = datetime.now(UTC)
        batch_requests, batch_lines = [], []

        def flush() -> None:
            if batch_requests:
                session.execute(insert(AccessRequest), batch_requests)
                session.execute(insert(CargoLine), batch_lines)
                batch_requests.clear()
                batch_lines.clear()

        for i in range(rows + submitted):
            request_id = uuid7()
            is_submitted = i >= rows
            departure = now + timedelta(days=5 + i % 60, minutes=i % 1440)
            batch_requests.append(
                {
                    "id": request_id,
                    "organization_id": organizations[i % len(organizations)].id,
                    "created_by": "bench",
                    "destination_city_id": cities[i % len(cities)],
                    "origin_name": "Warehouse",
                    "route": [],
                    "planned_departure": departure,
                    "planned_arrival": departure + timedelta(hours=6),
                    "trucks": 10,
                    "people_targeted": 1000,
                    "contact": {"name": "bench"},
                    "status": "submitted" if is_submitted else ("draft", "approved", "delivered", "cancelled")[i % 4],
                    "version": 1,
                    "submitted_at": now if is_submitted else None,
                    "review_due_at": now + timedelta(days=9) if is_submitted else None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            batch_lines.append(
                {
                    "id": uuid7(),
                    "access_request_id": request_id,
                    "position": 0,
                    "sector": "food",
                    "item": "Flour",
                    "quantity": 100.0,
                    "unit": "MT",
                }
            )
            if len(batch_requests) >= 5000:
                flush()
        flush()
        session.commit()
    database.dispose()


def deep_cursor(database_url: str, offset: int, organization: str | None) -> str:
    from sqlalchemy import select

    from api.pagination import encode_cursor
    from db.engine import Database
    from db.models import AccessRequest, Organization

    database = Database(database_url, pool_size=1)
    with database.session(write=False) as session:
        stmt = select(AccessRequest.id).order_by(AccessRequest.id).offset(offset).limit(1)
        if organization:
            org_id = session.execute(select(Organization.id).where(Organization.name == organization)).scalar_one()
            stmt = stmt.where(AccessRequest.organization_id == org_id)
        last = session.execute(stmt).scalar_one()
    database.dispose()
    return encode_cursor(["-", str(last)])


def approve_all(
    base: str, headers: dict[str, str], ids: list[str], concurrency: int
) -> tuple[float, float, float, int]:
    latencies: list[float] = []
    failures = 0

    # One client for all threads: building one per request (an SSL context each) would measure httpx.
    client = httpx.Client(
        timeout=30, limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    )

    def approve(request_id: str) -> None:
        nonlocal failures
        started = time.perf_counter()
        response = client.post(f"{base}/v1/access-requests/{request_id}/approve", json={}, headers=headers)
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            failures += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(approve, ids))
    client.close()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return len(ids) / elapsed, statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1], failures


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--approvals", type=int, default=2000)
    args = parser.parse_args()

    bare = measure_bare(args)
    results: list[Result] = [bare]
    with serve_api(args.database_url) as (base, env):
        database_url = database_url_of(env)
        started = time.perf_counter()
        generate(database_url, args.rows, submitted=args.approvals)
        print(f"generated {args.rows + args.approvals} requests in {time.perf_counter() - started:.1f} s")
        partner = {"Authorization": f"Bearer {token(base, 'partner.wfp@aidaccess.example')}"}
        coordinator = {"Authorization": f"Bearer {token(base, 'coordinator@aidaccess.example')}"}
        half = args.rows // 2
        cases = [
            ("list 50, partner, first page", partner, ""),
            (
                "list 50, partner, after 25,000 of its own",
                partner,
                deep_cursor(database_url, half // 2, "World Food Programme"),
            ),
            ("list 50, coordinator, first page", coordinator, ""),
            (f"list 50, coordinator, after {half:,}", coordinator, deep_cursor(database_url, half, None)),
        ]
        for name, headers, cursor in cases:
            url = f"{base}/v1/access-requests?limit=50" + (f"&cursor={cursor}" if cursor else "")
            assert httpx.get(url, headers=headers).status_code == 200
            results.append(measure(name, url, args, headers))
        cursor = None
        ids = []
        while len(ids) < args.approvals:
            params = {"status": "submitted", "limit": 200} | ({"cursor": cursor} if cursor else {})
            page = httpx.get(f"{base}/v1/access-requests", params=params, headers=coordinator).json()
            ids += [r["id"] for r in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        rate, p50, p99, failures = approve_all(base, coordinator, ids[: args.approvals], 32)
        results.append(
            Result(f"approve ({len(ids[: args.approvals])} requests, 32 clients)", rate, p50, p99, len(ids), failures)
        )
    report(results, bare, "requests")


if __name__ == "__main__":
    main()
