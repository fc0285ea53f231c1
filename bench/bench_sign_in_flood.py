"""A legitimate sign-in during a flood of sign-ins with unknown e-mails (issue 33, finding 6).

The server is served as `make run` serves it (one worker, production Argon2: ~100 ms of CPU a
check). A flood client at 127.0.0.1 keeps FLOOD sign-ins in flight with random unknown e-mails;
meanwhile a legitimate user at 127.0.0.2 signs in, one after another. Prints the legitimate
sign-ins' latencies, what the flood got (statuses), and the login_attempt rows it left.

    .venv/bin/python bench/bench_sign_in_flood.py [--flood 60] [--legitimate 10] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PASSWORD, database_url_of, serve_api  # noqa: E402


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flood", type=int, default=60, help="sign-ins the flood keeps in flight")
    parser.add_argument("--legitimate", type=int, default=10, help="legitimate sign-ins, one after another")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with serve_api(args.database_url, core=None) as (base, env):
        url = f"{base}/v1/auth/token"
        statuses: Counter[int] = Counter()
        stop = asyncio.Event()

        async def flooder(client: httpx.AsyncClient) -> None:
            while not stop.is_set():
                email = f"{secrets.token_hex(6)}@nowhere.example"
                response = await client.post(
                    url, data={"grant_type": "password", "username": email, "password": "guess-1234567"}
                )
                statuses[response.status_code] += 1
                if response.status_code == 503:
                    await asyncio.sleep(0.01)  # what a client honouring Retry-After at its shortest does, roughly

        flood_client = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=args.flood))
        legit_client = httpx.AsyncClient(timeout=60, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2"))
        flood = [asyncio.create_task(flooder(flood_client)) for _ in range(args.flood)]
        await asyncio.sleep(2)  # the flood under way
        latencies, answers = [], Counter()
        for _ in range(args.legitimate):
            started = time.perf_counter()
            response = await legit_client.post(
                url, data={"grant_type": "password", "username": "coordinator@aidaccess.example", "password": PASSWORD}
            )
            latencies.append(time.perf_counter() - started)
            answers[response.status_code] += 1
        stop.set()
        await asyncio.gather(*flood)
        await flood_client.aclose()
        await legit_client.aclose()
        engine = create_engine(database_url_of(env))
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT count(*) FROM login_attempt")).scalar_one()
        engine.dispose()
    print(
        f"legitimate sign-ins: {dict(answers)}; latency median {statistics.median(latencies):.2f} s, "
        f"max {max(latencies):.2f} s"
    )
    print(f"flood: {dict(statuses)}; login_attempt rows left: {rows}")


if __name__ == "__main__":
    asyncio.run(main())
