"""CPU per list of 50 access requests (each with cargo lines), in-process, without HTTP:
the list endpoint as it is, with its requests' encodings kept (a list polled again) and with
none kept (each read and encoded from its row), against loading ORM instances and validating
them through AccessRequestRead as lists did before (the encoding test in
tests/test_access_requests.py shows all give the same bytes).

    .venv/bin/python bench/bench_list.py [--lists 300] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_load import request_body  # noqa: E402
from bench.common import PASSWORD, aidaccess, api_env  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lists", type=int, default=300)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = api_env(args.database_url, Path(tmp))
        aidaccess(env, "db", "upgrade")
        aidaccess(env, "seed", "demo", "--password-stdin", stdin=PASSWORD)
        os.environ.update(env)
        run(args.lists)


def run(lists: int) -> None:
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from api.app import LISTED_REQUESTS_KEPT, create_app
    from api.deps import authenticate
    from api.representations import BodyCache
    from api.routers import access_requests as router
    from api.schemas.access_requests import AccessRequestPage
    from db.models import AccessRequest
    from workflow import request_lists
    from workflow.pauses import request_flags

    app = create_app()
    with TestClient(app) as client:

        def login(email: str) -> str:
            return client.post(
                "/v1/auth/token", data={"grant_type": "password", "username": email, "password": PASSWORD}
            ).json()["access_token"]

        partner = login("partner.wfp@aidaccess.example")
        city = client.get(
            "/v1/cities", headers={"Authorization": f"Bearer {login('coordinator@aidaccess.example')}"}
        ).json()["items"][0]["id"]
        for _ in range(60):
            assert (
                client.post(
                    "/v1/access-requests", json=request_body(city), headers={"Authorization": f"Bearer {partner}"}
                ).status_code
                == 201
            )
        services = app.state.services
        principal = asyncio.run(authenticate(services, f"Bearer {partner}"))
    database = services.database

    def as_now() -> bytes:
        session = database.session(write=False)
        try:
            return router.list_access_requests(
                request=SimpleNamespace(headers={}, app=app), session=session, principal=principal
            ).body
        finally:
            session.close()

    def as_now_cold() -> bytes:
        app.state.listed_requests = BodyCache(size=LISTED_REQUESTS_KEPT)
        return as_now()

    def as_before() -> bytes:
        session = database.session(write=False)
        try:
            stmt = request_lists._visible(select(AccessRequest), restricted=True).order_by(AccessRequest.id).limit(51)
            items = list(session.execute(stmt, {"viewer_organization_id": principal.organization_id}).scalars())[:50]
            lines = request_lists.cargo_line_rows(session, [r.id for r in items])
            flags = request_flags(session, items)
            page = AccessRequestPage(
                items=[router.access_request_read(session, principal, r, lines[r.id], flags) for r in items],
                next_cursor=None,
            )
            return page.model_dump_json().encode()
        finally:
            session.close()

    print(f"{'way':<48}{'ms CPU per list':>16}")
    for label, fn in (
        ("ORM instances + AccessRequestRead (before)", as_before),
        ("the endpoint, nothing kept", as_now_cold),
        ("the endpoint, every request kept", as_now),
    ):
        for _ in range(20):
            fn()
        started = time.process_time()
        for _ in range(lists):
            fn()
        print(f"{label:<48}{(time.process_time() - started) / lists * 1000:>16.2f}")


if __name__ == "__main__":
    main()
