"""Tracker benchmark: polls per second of one tracker process, and the carrier's busiest second.

    .venv/bin/python -m benchmarks.tracker [--sizes 10000,100000] [--latencies 0,100] [--measure-seconds 15]
                                           [--clients http11,aiohttp] [--no-limit-runs]

Needs the local PostgreSQL (``OMS_TEST_PG_DSN``, default postgres@127.0.0.1:5432). Each
run gets a database of its own, seeded with shipped shipments that are all due, and
real ``oms-shipments run tracker`` processes (embedded broker: the tracker publishes
nothing here). The carrier is ``benchmarks/fast_carrier.py`` in its own process, a
minimal asyncio HTTP/1.1 keep-alive server following the contract's query and history
answers: the stdlib sandbox carrier cannot answer fast enough to measure the tracker.

Throughput runs: a limit far above what one process can send, a poll interval longer
than the run, so each shipment is polled once; polls per second are measured over
``--measure-seconds`` of steady state (after 5% polled, before 95%), so a run takes
well under a minute even with 100,000 due shipments in the table.
Rate-limit runs: a limit that binds, a one-second poll interval so shipments keep coming
due, 1 and 3 tracker processes; the carrier reports the most requests it received in any
one-second window (sliding, not per calendar second) and the most queries one shipment
had in flight at once.
``--clients``: the throughput runs once per HTTP client of the tracker's carrier requests,
back to back under the same machine load: ``http11`` (the tracker's own) and ``aiohttp``
(``benchmarks/aiohttp_tracker.py``; needs ``pip install aiohttp``). Each row notes the
load average (``os.getloadavg``) it was measured under.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg

from services.migrations import upgrade

PG_DSN = os.environ.get("OMS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
BIN = Path(sys.executable).with_name("oms-shipments")
#: The command that runs one tracker, per HTTP client of its carrier requests.
TRACKER_COMMANDS = {
    "http11": [str(BIN), "run", "tracker"],
    "aiohttp": [sys.executable, "-m", "benchmarks.aiohttp_tracker", "run", "tracker"],
}
PASSWORD = "bench-secret"

SEED = """
INSERT INTO packages (package_id, order_number, carrier, delivery_type, first_seen_at, shipped_at)
SELECT 'PKG-' || i, 'ORD-' || i, 'bench', 'CUSTOMER', now(), now() FROM generate_series(1, {n:d}) AS i;
INSERT INTO shipments (id, package_id, order_number, carrier, status, sequence, carrier_status,
                       tracking_number, created_at, updated_at, next_poll_at)
SELECT md5('shipment' || i), 'PKG-' || i, 'ORD-' || i, 'bench', 'shipped', 3, 'SHIPPING',
       'BEN' || i, now(), now(), now() - interval '1 minute' FROM generate_series(1, {n:d}) AS i;
ANALYZE shipments;
"""
RESET = [
    "UPDATE shipments SET next_poll_at = now() - interval '1 minute', lease_owner = NULL, polls = 0",
    "DELETE FROM carrier_pacing",
    "VACUUM ANALYZE shipments",
]
DUE_QUERY_PLAN = """
EXPLAIN UPDATE shipments SET lease_owner = 'x', lease_until = now() + interval '60 s',
                             next_poll_at = now() + interval '60 s'
WHERE id = ANY(ARRAY(SELECT id FROM shipments
                     WHERE carrier = 'bench' AND poll_priority = 1 AND next_poll_at IS NOT NULL
                       AND next_poll_at <= now()
                     ORDER BY next_poll_at LIMIT 500 FOR UPDATE SKIP LOCKED))
RETURNING id, carrier, status, carrier_status, updated_at, created_at, history_wanted
"""


class Database:
    def __init__(self):
        self.name = f"oms_bench_{uuid.uuid4().hex[:8]}"
        self._admin(f'CREATE DATABASE "{self.name}"')
        self.url = PG_DSN.rsplit("/", 1)[0] + f"/{self.name}"
        upgrade(self.url)

    def _admin(self, sql: str) -> None:
        with psycopg.connect(PG_DSN, autocommit=True) as connection:
            connection.execute(sql)

    def run(self, sql: str, **params):
        with psycopg.connect(self.url, autocommit=True) as connection:
            cursor = connection.execute(sql, params or None)
            return cursor.fetchall() if cursor.description else None

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Carrier:
    def __init__(self, latency_ms: float):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fast_carrier", "--latency-ms", str(latency_ms), "--password", PASSWORD],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}"

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url + "/_stats", timeout=60) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def start_trackers(
    count: int, database: Database, carrier: Carrier, workdir: Path, client: str = "http11", **carrier_keys
) -> list:
    carriers_file = workdir / "carriers.toml"
    keys = {"url": carrier.url, "username": "bench", "password": PASSWORD, **carrier_keys}
    carriers_file.write_text("[carriers.bench]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items()))
    env = {
        **os.environ,
        "OMS_DATABASE_URL": database.url,
        "OMS_AMQP_URL": "memory://",
        "OMS_CARRIERS_FILE": str(carriers_file),
        "OMS_LOG_LEVEL": "WARNING",
        "OMS_LOG_FORMAT": "json",
        "OMS_TRACKER_IDLE_S": "0.1",
        "OMS_METRICS_PORT": "0",
    }
    return [
        subprocess.Popen(
            TRACKER_COMMANDS[client], env=env, stdout=open(workdir / f"tracker-{n}.log", "wb"), stderr=subprocess.STDOUT
        )
        for n in range(count)
    ]


def stop_trackers(processes: list) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def polled(database: Database) -> int:
    return database.run("SELECT coalesce(sum(polls), 0) FROM shipments")[0][0]


def throughput(
    database: Database, size: int, latency_ms: float, workdir: Path, measure_s: float, client: str = "http11"
) -> tuple[float, int, float]:
    """(polls per second over ``measure_s`` of steady state, polls then, seconds measured).

    Every one of the ``size`` shipments is due, so the due query runs against the whole
    table; the measurement starts once the tracker has polled 5% of them (start-up left
    out) and ends after ``measure_s`` or at 95% (the tail left out), whichever is first.
    """
    for statement in RESET:
        database.run(statement)
    carrier = Carrier(latency_ms)
    trackers = start_trackers(
        1, database, carrier, workdir, client, poll_interval_s=86_400, max_requests_per_s=1_000_000
    )
    started, first = time.monotonic(), None
    try:
        while time.monotonic() - started < 120 + measure_s:
            done, now = polled(database), time.monotonic()
            if first is None and done >= 0.05 * size:
                first = (now, done)
            elif first is not None and (now - first[0] >= measure_s or done >= 0.95 * size):
                return (done - first[1]) / (now - first[0]), done - first[1], now - first[0]
            time.sleep(0.25)
        raise RuntimeError(f"the tracker polled {polled(database)} of {size} in {time.monotonic() - started:.0f} s")
    finally:
        stop_trackers(trackers)
        carrier.stop()


def rate_limited(database: Database, trackers: int, limit: float, seconds: float, workdir: Path) -> dict:
    for statement in RESET:
        database.run(statement)
    carrier = Carrier(0)
    processes = start_trackers(trackers, database, carrier, workdir, poll_interval_s=1, max_requests_per_s=limit)
    try:
        waited = time.monotonic()  # start-up (imports, a loaded machine) is not part of the run
        while carrier.stats()["requests"] == 0 and time.monotonic() - waited < 120:
            time.sleep(0.2)
        time.sleep(seconds)
    finally:
        stop_trackers(processes)
    stats = carrier.stats()
    carrier.stop()
    return stats


def throughput_row(
    database: Database, size: int, latency: float, workdir: Path, measure_s: float, client: str
) -> tuple:
    rate, count, took = throughput(database, size, latency, workdir, measure_s, client)
    target = 2000 if latency == 0 else 1000
    return (
        f"throughput, 1 tracker ({client}), carrier {latency:g} ms",
        f"{size:,}",
        f"{rate:,.0f} queries/s",
        f">= {target:,}/s",
        "met" if rate >= target else "MISSED",
        f"{count:,} polls in {took:.1f} s of steady state; load {os.getloadavg()[0]:.1f}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Tracker throughput and rate-limit benchmark")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--latencies", default="0,100", help="carrier latencies in ms")
    parser.add_argument("--limit", type=float, default=500, help="max_requests_per_s of the rate-limit runs")
    parser.add_argument("--limit-seconds", type=float, default=20)
    parser.add_argument(
        "--measure-seconds",
        type=float,
        default=15,
        help="steady-state seconds of each throughput run (the table keeps every row due)",
    )
    parser.add_argument("--clients", default="http11", help="HTTP clients of the tracker: http11,aiohttp")
    parser.add_argument("--no-limit-runs", action="store_true", help="throughput runs only")
    args = parser.parse_args()
    clients = args.clients.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    latencies = [float(s) for s in args.latencies.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="oms-bench-"))
    rows, plans = [], {}
    for size in sizes:
        database = Database()
        try:
            for statement in SEED.format(n=size).split(";"):
                if statement.strip():
                    database.run(statement)
            plans[size] = "\n".join(r[0] for r in database.run(DUE_QUERY_PLAN))
            for latency in latencies:
                for client in clients:
                    rows.append(throughput_row(database, size, latency, workdir, args.measure_seconds, client))
                    print(f"... {rows[-1]}", file=sys.stderr, flush=True)
            if size == sizes[0] and not args.no_limit_runs:
                for trackers in (1, 3):
                    stats = rate_limited(database, trackers, args.limit, args.limit_seconds, workdir)
                    peak = stats["max_per_second"]
                    rows.append(
                        (
                            f"rate limit, {trackers} tracker(s), carrier 0 ms",
                            f"{size:,}",
                            f"busiest 1-s window {peak} requests",
                            f"<= {args.limit:g} (+5%)",
                            "met" if peak <= args.limit * 1.05 else "MISSED",
                            f"{stats['requests']} requests in {args.limit_seconds:g} s; "
                            f"max in flight per shipment {stats['max_in_flight_per_shipment']}",
                        )
                    )
                    print(f"... {rows[-1]}", file=sys.stderr, flush=True)
        finally:
            database.drop()
    print(f"Command: {' '.join(sys.argv)}\n")
    print(
        f"Tracker benchmark ({os.cpu_count()} CPUs; tracker, carrier and PostgreSQL on one machine; "
        "carrier: benchmarks/fast_carrier.py, an asyncio HTTP/1.1 keep-alive server)\n"
    )
    print("| run | active shipments | measured | target | | notes |")
    print("|---|---:|---:|---:|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for size, plan in plans.items():
        print(f"\nThe due-shipment claim at {size:,} active shipments (EXPLAIN):\n\n```\n{plan}\n```")


if __name__ == "__main__":
    main()
