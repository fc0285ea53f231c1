"""GET /v1/me (token verified, user checked active in the database) against a bare
FastAPI endpoint, both served the way `make run` serves, at 64 connections.

    .venv/bin/python bench/bench_me.py [--seconds 10] [--runs 3] [--database-url URL]

Server pinned to core 0 and wrk to core 1 (as in shared/notes/performance-baseline.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import arguments, measure, measure_bare, report, serve_api, token  # noqa: E402


def main() -> None:
    parser = arguments(__doc__)
    args = parser.parse_args()

    bare = measure_bare(args)
    with serve_api(args.database_url) as (base, _env):
        headers = {"Authorization": f"Bearer {token(base, 'partner.wfp@aidaccess.example')}"}
        me = measure("GET /v1/me (token + active check)", f"{base}/v1/me", args, headers)
        health = measure("GET /healthz (middleware only)", f"{base}/healthz", args)
    report([bare, health, me], bare, "me")
    ratio = me.rps / bare.rps
    print(f"\n/v1/me at {ratio:.2f} of the bare endpoint (target 0.30); failed requests: {me.errors}")


if __name__ == "__main__":
    main()
