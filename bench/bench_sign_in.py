"""Writes during a burst of sign-ins (a shift starting): each sign-in checks its password with
Argon2, about 100 ms of CPU. Creates of access requests at 4 connections, alone, then beside
password sign-ins at 8 connections, served as `make run` serves them (one worker, pinned to core 0;
wrk on core 1).

    .venv/bin/python bench/bench_sign_in.py [--seconds 10] [--runs 3] [--database-url URL]

Prints requests per second, p50 and p99 of the creates alone and beside the sign-ins, and of the
sign-ins. A sign-in whose password check held the write's turn (SQLite has one) would put every
create behind it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_load import request_body  # noqa: E402
from bench.common import PASSWORD, Result, arguments, median_of, report, serve_api, token, wrk  # noqa: E402

POST_LUA = """
wrk.method = "POST"
wrk.body = '%(body)s'
wrk.headers["Content-Type"] = "%(content_type)s"
%(auth)s
"""


def script(directory: Path, *, body: str, content_type: str, bearer: str | None = None) -> str:
    path = directory / f"{len(list(directory.iterdir()))}.lua"
    auth = f'wrk.headers["Authorization"] = "Bearer {bearer}"' if bearer else ""
    path.write_text(POST_LUA % {"body": body, "content_type": content_type, "auth": auth})
    return str(path)


def main() -> None:
    args = arguments(__doc__).parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="aidaccess-bench-sign-in-") as tmp,
        serve_api(args.database_url, extra_env={"AIDACCESS_ACCESS_TOKEN_MINUTES": "15"}) as (base, _env),
    ):
        directory = Path(tmp)
        partner = token(base, "partner.wfp@aidaccess.example")
        city = httpx.get(
            f"{base}/v1/cities", params={"q": "madaya"}, headers={"Authorization": f"Bearer {partner}"}
        ).json()["items"][0]["id"]
        creates = script(
            directory, body=json.dumps(request_body(city)), content_type="application/json", bearer=partner
        )
        sign_ins = script(
            directory,
            body=f"grant_type=password&username=coordinator%40aidaccess.example&password={PASSWORD}",
            content_type="application/x-www-form-urlencoded",
        )

        def run(connections: int, lua: str) -> Result:
            return wrk(
                f"{base}/v1/access-requests" if lua == creates else f"{base}/v1/auth/token",
                connections=connections,
                seconds=args.seconds,
                script=lua,
            )

        alone, beside, signing_in = [], [], []
        for _ in range(args.runs):
            alone.append(run(4, creates))
            with ThreadPoolExecutor(2) as pool:  # both wrk runs at once
                creating, signing = pool.submit(run, 4, creates), pool.submit(run, 8, sign_ins)
                beside.append(creating.result())
                signing_in.append(signing.result())
    results = [
        median_of("creates alone (4 connections)", alone),
        median_of("creates beside sign-ins (4 connections)", beside),
        median_of("password sign-ins (8 connections)", signing_in),
    ]
    report(results, results[0], "sign-in")


if __name__ == "__main__":
    main()
