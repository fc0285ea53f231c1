"""GET /v1/me (token verified, user checked active in the database) against a bare
FastAPI endpoint, both served the way `make run` serves, at 64 connections.

    .venv/bin/python bench/bench_me.py [--seconds 10] [--runs 3] [--database-url URL]

Server pinned to core 0 and wrk to core 1 (as in shared/notes/performance-baseline.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median_of, report, serve_api, serve_bare, token, wrk  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file, as make run")
    args = parser.parse_args()

    with serve_bare() as base:
        bare = median_of("bare FastAPI endpoint", [wrk(f"{base}/bare", connections=args.connections, seconds=args.seconds) for _ in range(args.runs)])
    with serve_api(args.database_url) as (base, _env):
        headers = {"Authorization": f"Bearer {token(base, 'partner.wfp@aidaccess.example')}"}
        me = median_of("GET /v1/me (token + active check)", [
            wrk(f"{base}/v1/me", connections=args.connections, seconds=args.seconds, headers=headers) for _ in range(args.runs)
        ])
        health = median_of("GET /healthz (middleware only)", [
            wrk(f"{base}/healthz", connections=args.connections, seconds=args.seconds) for _ in range(args.runs)
        ])
    report([bare, health, me], bare, "me")
    ratio = me.rps / bare.rps
    print(f"\n/v1/me at {ratio:.2f} of the bare endpoint (target 0.30); failed requests: {me.errors}")


if __name__ == "__main__":
    main()
