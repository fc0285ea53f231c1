"""Growth (issue 7, item 5): list endpoints, the feed and the access picture at 10,000
rows and at 1,000,000 access requests plus 1,000,000 audit events, on PostgreSQL.

    .venv/bin/python bench/bench_growth.py [--pg-url URL] [--rows 1000000] [--samples 60]

Rows are written with COPY (the workflow is measured elsewhere). Each endpoint is timed
over HTTP from one connection (median and p90 of `--samples` calls, after a warm-up),
first with 10,000 rows of each, then after growing to `--rows`; the ratio must stay
under 1.5. Then every SQL statement each endpoint issues is run under
`EXPLAIN (ANALYZE, BUFFERS)` and summarised: the scans it uses on the big tables and
its execution time.
"""

from __future__ import annotations

import hashlib
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_load import fresh_pg  # noqa: E402
from bench.common import serve_api, token  # noqa: E402

BIG_TABLES = ("access_request", "cargo_line", "audit_event")


def uuid7_at(ms: int) -> uuid.UUID:
    """A version-7 UUID for a given millisecond, so generated ids sort like real ones."""
    rand = uuid.uuid4().int & ((1 << 74) - 1)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return uuid.UUID(int=value)


def grow(database_url: str, *, requests: int, events: int, total: int) -> None:
    """Append access requests (one cargo line each) and audit events with COPY, spread
    evenly over the 400 days before now as if ``total`` rows had been made in them (so
    the first 10,000 are as spread out as the last), departures up to 35 days after."""
    import psycopg
    from sqlalchemy import make_url

    url = make_url(database_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False)) as conn:
        orgs = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM organization WHERE kind IN ('un_agency', 'red_cross_red_crescent', 'ngo')"
            )
        ]
        cities = [r[0] for r in conn.execute("SELECT id FROM city")]
        start_id = conn.execute("SELECT coalesce(max(id), 0) FROM audit_event").fetchone()[0]
        prev_hash = conn.execute("SELECT hash FROM audit_event ORDER BY id DESC LIMIT 1").fetchone()[0]
        now = datetime.now(UTC)
        step_ms = 400 * 86_400_000 // total
        offset = conn.execute("SELECT count(*) FROM access_request").fetchone()[0]
        # History: every generated request is closed (delivered, turned back, cancelled or
        # denied) and left 40 to 440 days ago. What is open now (the demo's and what the API
        # adds) is the same at 10,000 rows as at 1,000,000: history grows, the present does not.
        base_ms = int((now - timedelta(days=440)).timestamp() * 1000)
        statuses = ("delivered", "partially_delivered", "cancelled", "denied", "turned_back", "delivered")
        request_ids = []
        with conn.cursor() as cur:
            with cur.copy(
                "COPY access_request (id, organization_id, created_by, destination_city_id, origin_name, route, "
                "planned_departure, planned_arrival, trucks, people_targeted, contact, status, version, submitted_at, "
                "review_due_at, created_at, updated_at, approved_at, decided_at, dispatched_at, completed_at, outcome, "
                "cancelled_at) FROM STDIN"
            ) as copy:
                for i in range(requests):
                    at_ms = base_ms + (offset + i) * step_ms
                    rid = uuid7_at(at_ms)
                    request_ids.append(rid)
                    status = statuses[i % len(statuses)]
                    created = datetime.fromtimestamp(at_ms / 1000, UTC)
                    departure = created + timedelta(days=5 + i % 30)
                    submitted = created + timedelta(hours=1)
                    decided = created + timedelta(days=1)
                    approved = decided if status != "denied" else None
                    completed = (
                        departure + timedelta(hours=6)
                        if status in ("delivered", "partially_delivered", "turned_back")
                        else None
                    )
                    cancelled = decided + timedelta(days=1) if status == "cancelled" else None
                    copy.write_row(
                        (
                            rid,
                            orgs[i % len(orgs)],
                            "bench",
                            cities[i % len(cities)],
                            "Warehouse",
                            "[]",
                            departure,
                            departure + timedelta(hours=6),
                            10,
                            1000,
                            '{"name": "bench"}',
                            status,
                            1,
                            submitted,
                            submitted + timedelta(days=9),
                            created,
                            created,
                            approved,
                            decided,
                            departure if completed else None,
                            completed,
                            status if completed else None,
                            cancelled,
                        )
                    )
            with cur.copy(
                "COPY cargo_line (id, access_request_id, position, sector, item, quantity, unit) FROM STDIN"
            ) as copy:
                for rid in request_ids:
                    copy.write_row((uuid.uuid4(), rid, 0, "food", "Flour", 100.0, "MT"))
            # The generated events do not chain (the bench never verifies them); ids continue the sequence.
            with cur.copy(
                "COPY audit_event (id, occurred_at, actor_type, actor_id, actor_label, organization_id, entity_type, "
                "entity_id, action, from_state, to_state, changes, request_id, prev_hash, hash) FROM STDIN"
            ) as copy:
                for i in range(events):
                    # Unique fake hashes: the generated events do not chain.
                    fake = hashlib.sha256(f"bench-{start_id + 1 + i}".encode()).hexdigest()
                    rid = request_ids[i % len(request_ids)] if request_ids else uuid.uuid4()
                    kind = ("access_request", "access_request", "access_request", "city", "pause")[i % 5]
                    action, to_state = (("created", "draft"), ("submitted", "submitted"), ("approved", "approved"))[
                        i % 3
                    ]
                    copy.write_row(
                        (
                            start_id + 1 + i,
                            datetime.fromtimestamp((base_ms + (offset + i) * step_ms) / 1000, UTC),
                            "user",
                            "bench",
                            "bench",
                            str(orgs[i % len(orgs)]),
                            kind,
                            str(rid),
                            action,
                            None,
                            to_state,
                            "{}",
                            None,
                            prev_hash,
                            fake,
                        )
                    )
                    prev_hash = fake
        conn.commit()
        conn.execute("ANALYZE")


def timed(client: httpx.Client, path: str, params: dict, samples: int) -> tuple[float, float]:
    for _ in range(5):
        client.get(path, params=params).raise_for_status()
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        client.get(path, params=params).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9)]


def endpoints(base: str, heads: dict[str, dict]) -> dict[str, tuple[str, str, dict]]:
    coordinator = heads["coordinator"]
    city = httpx.get(f"{base}/v1/cities", params={"q": "madaya"}, headers=coordinator).json()["items"][0]["id"]
    feed_head = httpx.get(f"{base}/v1/events", params={"limit": 1}, headers=coordinator).json()
    last = httpx.get(f"{base}/v1/audit", params={"limit": 1}, headers=heads["admin"]).json()
    return {
        "list, partner, first page": ("partner", "/v1/access-requests", {"limit": 50}),
        "list, coordinator, first page": ("coordinator", "/v1/access-requests", {"limit": 50}),
        "list, coordinator, by departure": ("coordinator", "/v1/access-requests", {"limit": 50, "sort": "departure"}),
        "list, coordinator, submitted, newest": (
            "coordinator",
            "/v1/access-requests",
            {"limit": 50, "status": "submitted", "order": "desc"},
        ),
        "list, coordinator, overdue": ("coordinator", "/v1/access-requests", {"limit": 50, "overdue": "true"}),
        "list, to one city": ("coordinator", "/v1/access-requests", {"limit": 50, "destination_city_id": city}),
        "feed, coordinator, from the start": ("coordinator", "/v1/events", {"limit": 100}),
        "feed, partner, from the start": ("partner", "/v1/events", {"limit": 100}),
        "audit, admin, first page": ("admin", "/v1/audit", {"limit": 50}),
        "audit, admin, user events only": ("admin", "/v1/audit", {"limit": 50, "entity_type": "user"}),
        "access picture (uncached)": ("coordinator", f"/v1/cities/{city}/access", {}),
        # Before the history's first approval: nothing was upcoming, and finding that out must not
        # walk every request departing since (ix_access_request_in_flight).
        "access picture, 500 days back (uncached)": ("coordinator", f"/v1/cities/{city}/access", {"_days_back": 500}),
        "snapshot, 500 days back (uncached)": ("coordinator", "/v1/access-snapshot", {"_days_back": 500}),
        "_meta": ("", "", {"feed": feed_head, "audit": last}),
    }


def measure_all(base: str, samples: int) -> dict[str, tuple[float, float]]:
    heads = {
        role: {"Authorization": f"Bearer {token(base, email)}"}
        for role, email in (
            ("partner", "partner.wfp@aidaccess.example"),
            ("coordinator", "coordinator@aidaccess.example"),
            ("admin", "admin@aidaccess.example"),
        )
    }
    out = {}
    for name, (role, path, params) in endpoints(base, heads).items():
        if name.startswith("_"):
            continue
        with httpx.Client(base_url=base, headers=heads[role], timeout=60) as client:
            if "uncached" in name:
                # A new as_of per call: no ETag cache can answer, every call reads the database.
                times = []
                for i in range(samples + 5):
                    as_of = (datetime.now(UTC) - timedelta(days=params.get("_days_back", 0), minutes=i + 1)).isoformat()
                    started = time.perf_counter()
                    client.get(path, params={"as_of": as_of}).raise_for_status()
                    if i >= 5:
                        times.append((time.perf_counter() - started) * 1000)
                times.sort()
                out[name] = (statistics.median(times), times[int(len(times) * 0.9)])
            else:
                out[name] = timed(client, path, params, samples)
    return out


def explain(database_url: str) -> None:
    """Run each endpoint's statements under EXPLAIN ANALYZE, via the workflow functions."""
    from sqlalchemy import event, select

    from auth.principal import Principal
    from auth.roles import OrganizationKind, PrincipalKind, Role
    from db.engine import Database
    from db.models import City, Organization, User
    from workflow import access, access_requests, audit, events, request_lists
    from workflow.common import PageRequest

    database = Database(database_url, pool_size=2)
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, ARG001
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    with database.session(write=False) as session:

        def principal(email: str) -> Principal:
            user, org = session.execute(
                select(User, Organization)
                .join(Organization, Organization.id == User.organization_id)
                .where(User.email == email)
            ).one()
            return Principal(
                kind=PrincipalKind.user,
                id=user.id,
                label=user.email,
                name=user.full_name,
                organization_id=org.id,
                organization_name=org.name,
                organization_kind=OrganizationKind(org.kind),
                role=Role(user.role),
                scopes=frozenset(),
                token_id="bench",
                token_expires_at=2**31,
            )

        partner, coordinator = principal("partner.wfp@aidaccess.example"), principal("coordinator@aidaccess.example")
        admin = principal("admin@aidaccess.example")
        city_id = session.execute(select(City.id).where(City.name == "Madaya")).scalar_one()
        F = request_lists.RequestFilters
        calls = {
            "list, partner (+ its cargo lines)": lambda: access_requests.cargo_lines(
                session,
                [
                    r.id
                    for r in request_lists.list_access_requests(
                        session=session, actor=partner, filters=F(), page=PageRequest(50)
                    )[0]
                ],
            ),
            "list, coordinator": lambda: request_lists.list_access_requests(
                session=session, actor=coordinator, filters=F(), page=PageRequest(50)
            ),
            "list, by departure": lambda: request_lists.list_access_requests(
                session=session,
                actor=coordinator,
                filters=F(),
                page=PageRequest(50),
                sort=request_lists.SortKey.departure,
            ),
            "list, submitted, newest": lambda: request_lists.list_access_requests(
                session=session,
                actor=coordinator,
                filters=F(statuses=(access_requests.RequestStatus.submitted,)),
                page=PageRequest(50),
                descending=True,
            ),
            "list, overdue": lambda: request_lists.list_access_requests(
                session=session, actor=coordinator, filters=F(overdue=True), page=PageRequest(50)
            ),
            "list, to one city": lambda: request_lists.list_access_requests(
                session=session, actor=coordinator, filters=F(destination_city_id=city_id), page=PageRequest(50)
            ),
            "feed, coordinator": lambda: events.feed(session=session, actor=coordinator, after=0, limit=100),
            "feed, partner": lambda: events.feed(session=session, actor=partner, after=0, limit=100),
            "audit, admin": lambda: audit.list_audit_events(session, actor=admin, page=PageRequest(50)),
            "audit, admin, user events": lambda: audit.list_audit_events(
                session, actor=admin, page=PageRequest(50), entity_type="user"
            ),
            "access picture": lambda: access.access_picture(session=session, actor=coordinator, city_id=city_id),
            "access picture, 500 days back": lambda: access.access_picture(
                session=session, actor=coordinator, city_id=city_id, as_of=datetime.now(UTC) - timedelta(days=500)
            ),
        }
        engine = database.engine
        for name, call in calls.items():
            captured.clear()
            event.listen(engine, "before_cursor_execute", capture)
            try:
                call()
            finally:
                event.remove(engine, "before_cursor_execute", capture)
            print(f"\n{name}: {len(captured)} statement(s)")
            for statement, parameters in captured:
                with engine.connect() as conn:
                    raw = conn.connection.dbapi_connection
                    with raw.cursor() as cur:
                        cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters)
                        plan = cur.fetchone()[0][0]
                    raw.rollback()
                scans = []

                def walk(node: dict, scans: list[str] = scans) -> None:
                    if node.get("Relation Name") in BIG_TABLES or "Index Name" in node:
                        scans.append(
                            f"{node['Node Type']}"
                            + (f" using {node['Index Name']}" if "Index Name" in node else "")
                            + f" on {node.get('Relation Name', '?')} (rows {node.get('Actual Rows')})"
                        )
                    for child in node.get("Plans", []):
                        walk(child)

                walk(plan["Plan"])
                print(f"  {plan['Execution Time']:.2f} ms: " + ("; ".join(scans) or "no big table touched"))
    database.dispose()


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/aidaccess_ci")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--keep", action="store_true", help="keep the database (aidaccess_bench_growth) for a look")
    args = parser.parse_args()
    with fresh_pg(args.pg_url, "aidaccess_bench_growth", keep=args.keep) as url, serve_api(url, core=0) as (base, _env):
        started = time.perf_counter()
        grow(url, requests=args.small, events=args.small, total=args.rows)
        print(f"grown to {args.small:,} requests and audit events in {time.perf_counter() - started:.1f} s")
        small = measure_all(base, args.samples)
        started = time.perf_counter()
        grow(url, requests=args.rows - args.small, events=args.rows - args.small, total=args.rows)
        print(f"grown to {args.rows:,} requests and audit events in {time.perf_counter() - started:.1f} s")
        large = measure_all(base, args.samples)
        print(f"\n{'endpoint':42} {'p50 @10k':>9} {'p90':>7} {'p50 @1M':>9} {'p90':>7} {'ratio':>6}")
        for name in small:
            (s50, s90), (l50, l90) = small[name], large[name]
            print(f"{name:42} {s50:9.2f} {s90:7.2f} {l50:9.2f} {l90:7.2f} {l50 / s50:6.2f}")
        explain(url)


if __name__ == "__main__":
    main()
