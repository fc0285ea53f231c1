"""What a poll's database reads cost the server on PostgreSQL, in-process, without HTTP:
who the token names and the access picture's version inputs, 64 polls in flight.

    .venv/bin/python bench/bench_hot_pg.py [--polls 20000] [--pg-url URL]

Four ways, each printing polls per second and the client's CPU per poll (the server
process's share; PostgreSQL's own backends are not counted):
  - psycopg_pool, two statements per poll (the hot reads before this bench existed);
  - db.hot's connection lender, two statements per poll;
  - the lender, one statement per poll for both questions;
  - the lender, polls in flight together sharing statements (what api.fastpath runs now).
Every one of the 64 polls in flight carries a token of its own (its own jti), as 64
dashboards would: shared statements gain nothing from polls that happen to be the same.
Pinned to core 0 where the platform allows, as the server is in bench_load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from bench.bench_load import fresh_pg  # noqa: E402
from bench.common import aidaccess, api_env  # noqa: E402
from db.hot import HotReads, PostgresHotReads  # noqa: E402
from workflow import access  # noqa: E402

CONCURRENCY = 64
TYPES = access.PICTURE_ENTITY_TYPES


class UnsharedHotReads(PostgresHotReads):
    """The lender with one statement per poll: db.hot before polls shared statements."""

    _fetch_principal = HotReads._fetch_principal
    picture_inputs = HotReads.picture_inputs
    _principal_and_picture = HotReads._principal_and_picture


class PooledHotReads(UnsharedHotReads):
    """The same statements through psycopg_pool, as db.hot read them before."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._pool = None

    async def _fetch(self, sql, params):  # noqa: ANN001, ANN202
        if self._pool is None:
            from psycopg_pool import AsyncConnectionPool

            self._pool = AsyncConnectionPool(
                self._conninfo, min_size=1, max_size=8, open=False, kwargs={"autocommit": True, "prepare_threshold": 0}
            )
            await self._pool.open()
        async with self._pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchone()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


async def measure(hot: PostgresHotReads, user_id, *, polls: int, combined: bool) -> tuple[float, float]:  # noqa: ANN001
    from aidaccess.clock import utcnow

    async def poll(jti: str) -> None:
        if combined:
            row, _ = await hot.user_and_picture_inputs(user_id, None, jti, TYPES, utcnow())
        else:
            row = await hot.user(user_id, None, jti)
            await hot.picture_inputs(TYPES, utcnow())
        assert row is not None

    async def worker(count: int, jti: str) -> None:
        for _ in range(count):
            await poll(jti)

    await asyncio.gather(
        *[worker(20, f"jti-{i}") for i in range(CONCURRENCY)]
    )  # connections opened, statements prepared
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*[worker(polls // CONCURRENCY, f"jti-{i}") for i in range(CONCURRENCY)])
    done = polls // CONCURRENCY * CONCURRENCY
    return done / (time.perf_counter() - wall), (time.process_time() - cpu) / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polls", type=int, default=20000)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/aidaccess_ci")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    with fresh_pg(args.pg_url, "aidaccess_bench_hot") as url, tempfile.TemporaryDirectory() as tmp:
        env = api_env(url, Path(tmp))
        aidaccess(env, "db", "upgrade")
        aidaccess(env, "seed", "demo", "--password-stdin", stdin="bench-password-123456")
        engine = create_engine(url)
        with engine.connect() as connection:
            user_id = connection.execute(text("SELECT id FROM user_account ORDER BY email LIMIT 1")).scalar_one()
        engine.dispose()
        print(f"{'way':<44}{'polls/s':>10}{'CPU µs/poll':>14}")
        for label, hot, combined in (
            ("psycopg_pool, two statements", PooledHotReads(url), False),
            ("connection lender, two statements", UnsharedHotReads(url), False),
            ("connection lender, one statement", UnsharedHotReads(url), True),
            ("connection lender, shared statements", PostgresHotReads(url), True),
        ):

            async def run(hot=hot, combined=combined):  # noqa: ANN001, ANN202
                try:
                    return await measure(hot, user_id, polls=args.polls, combined=combined)
                finally:
                    await hot.close()

            rate, cpu = uvloop.run(run())
            print(f"{label:<44}{rate:>10.0f}{cpu:>14.0f}")


if __name__ == "__main__":
    main()
