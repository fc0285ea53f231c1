"""The change feed's requests per second, and webhook deliveries per second by one worker.

.venv/bin/python bench/bench_integration.py [--events 2000] [--seconds 10] [--runs 3]
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    ROOT,
    Result,
    arguments,
    database_url_of,
    free_port,
    measure,
    measure_bare,
    pinned,
    report,
    serve_api,
    token,
)


def make_events(database_url: str, count: int, receiver_url: str) -> None:
    """A webhook subscription for city.created, then ``count`` cities: one event and one delivery each."""
    from sqlalchemy import select

    from db.engine import Database
    from db.models import User, WebhookSubscription
    from workflow.audit import Actor
    from workflow.cities import create_city
    from workflow.webhooks import new_secret

    database = Database(database_url, pool_size=1)
    with database.session(write=True) as session:
        owner = session.execute(select(User).where(User.email == "coordinator@aidaccess.example")).scalar_one()
        session.add(
            WebhookSubscription(
                owner_type="user",
                owner_id=owner.id,
                organization_id=owner.organization_id,
                url=receiver_url,
                event_types=["city.created"],
                secret=new_secret(),
            )
        )
        session.commit()
    with database.session(write=True) as session:
        for i in range(count):
            create_city(
                session=session,
                actor=Actor.system("bench"),
                data={
                    "name": f"Bench town {i:05d}",
                    "pcode": f"C{700000 + i}",
                    "adm1_pcode": "SY01",
                    "adm1_name": "Damascus",
                    "latitude": 33.5,
                    "longitude": 36.3,
                },
            )
        session.commit()
    database.dispose()


def deliver_all(database_url: str, env: dict[str, str], count: int) -> float:
    """A running `aidaccess worker`, timed until the outbox is empty."""
    from sqlalchemy import func, select

    from db.engine import Database
    from db.models import WebhookDelivery

    database = Database(database_url, pool_size=1)
    started = time.perf_counter()
    worker = subprocess.Popen(
        pinned(0, [sys.executable, "-m", "aidaccess", "worker", "--interval", "0.05"]),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            with database.session(write=False) as session:
                delivered = session.execute(
                    select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.status == "delivered")
                ).scalar_one()
            if delivered >= count:
                break
            time.sleep(0.1)  # polling the outbox from the outside, not timing a behaviour
    finally:
        worker.terminate()
        worker.wait(timeout=10)
        database.dispose()
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()

    bare = measure_bare(args)
    results: list[Result] = [bare]
    port = free_port()
    receiver = subprocess.Popen(
        pinned(
            1,
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.receiver_app:app",
                "--port",
                str(port),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
        ),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.5)  # the receiver has no readiness endpoint; it starts in well under a second
        with serve_api(args.database_url) as (base, env):
            database_url = database_url_of(env)
            make_events(database_url, args.events, f"http://127.0.0.1:{port}/hook")
            headers = {"Authorization": f"Bearer {token(base, 'coordinator@aidaccess.example')}"}
            url = f"{base}/v1/events?limit=100"
            assert len(httpx.get(url, headers=headers).json()["items"]) == 100
            results.append(measure("feed, 100 events a page", url, args, headers))
            rate = deliver_all(database_url, env, args.events)
            print(f"one worker delivered {args.events} webhooks to a local receiver: {rate:.0f} per second")
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
    report(results, bare, "integration")


if __name__ == "__main__":
    main()
