"""Three real ``oms-shipments run tracker`` processes share the polling of many shipments.

Shipments are written straight into the database (shipped, due) and into the sandbox
carrier; one tracker is killed with SIGKILL halfway. Checked from the carrier's side:
no shipment ever had two queries in flight, no one-second window held more requests
than the carrier's limit (+5%), every shipment reached its final status, and the dead
tracker's shipments (the leases it held when killed: ``lease_owner`` names the process)
were asked again within one lease of the kill, plus a small scheduling tolerance.
"""

from __future__ import annotations

import os
import time

import psycopg
import pytest

from services.standins import now_iso
from services.standins.sandbox_carrier import _Shipment

import harness
from harness import CARRIER_PASSWORD, wait_until

LIMIT_PER_S = 100
LEASE_S = 10
TAKEOVER_TOLERANCE_S = 1.0
SCRIPT = ["SHIPPING", "SHIPPING", "DELIVERED"]  # two quiet polls, then news (and its history)


def seed(database_url: str, carrier, count: int) -> list[str]:
    ids = [f"shp-{n:06d}" for n in range(count)]
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO packages (package_id, order_number, carrier, delivery_type, first_seen_at, shipped_at) "
            "SELECT 'PKG-' || i, 'ORD-' || i, 'sandbox', 'CUSTOMER', now(), now() FROM generate_series(0, %s) i",
            (count - 1,),
        )
        connection.execute(
            "INSERT INTO package_items (package_id, order_item_id, sku, quantity) "
            "SELECT 'PKG-' || i, 100000 + i, 'SKU', 1 FROM generate_series(0, %s) i",
            (count - 1,),
        )
        connection.execute(
            "INSERT INTO shipments (id, package_id, order_number, carrier, status, sequence, carrier_status, "
            "tracking_number, created_at, updated_at, next_poll_at) "
            "SELECT 'shp-' || lpad(i::text, 6, '0'), 'PKG-' || i, 'ORD-' || i, 'sandbox', 'shipped', 3, 'CREATED', "
            "'SBX' || i, now(), now(), now() FROM generate_series(0, %s) i",
            (count - 1,),
        )
    for n, shipment_id in enumerate(ids):
        shipment = _Shipment(shipment_id, f"ORD-{n}", "Istanbul", f"SBX{n}", list(SCRIPT))
        shipment.history.append(("CREATED", now_iso()))
        carrier._shipments[shipment_id] = shipment
    return ids


def busiest_second(carrier) -> int:
    times = sorted(r.started for r in carrier.requests)
    best, left = 0, 0
    for right, t in enumerate(times):
        while t - times[left] >= 1.0:
            left += 1
        best = max(best, right - left + 1)
    return best


def query(database_url: str, sql: str) -> list[tuple]:
    with psycopg.connect(database_url) as connection:
        return connection.execute(sql).fetchall()


def run_three_trackers(tmp_path, database_url, carrier, count: int, timeout_s: float) -> None:
    ids = seed(database_url, carrier, count)
    carriers_file = harness.write_carriers_file(
        tmp_path / "carriers.toml",
        {
            "sandbox": {
                "url": carrier.url,
                "username": "user",
                "password": CARRIER_PASSWORD,
                "api_version": "1",
                # Polled no faster than half the limit allows, so the carrier keeps up and a delay
                # measures the takeover, not a backlog.
                "poll_interval_s": max(1, count / (LIMIT_PER_S / 2)),
                "max_requests_per_s": LIMIT_PER_S,
            }
        },
    )
    env = {
        **os.environ,
        "OMS_DATABASE_URL": database_url,
        "OMS_AMQP_URL": "memory://",
        "OMS_CARRIERS_FILE": str(carriers_file),
        "OMS_TRACKER_LEASE_S": str(LEASE_S),
        "OMS_TRACKER_IDLE_S": "0.1",
        "OMS_TRACKER_CONCURRENCY": "16",
        "OMS_LOG_FORMAT": "json",
    }
    trackers = [harness.ServiceProcess("tracker", env, tmp_path / f"tracker-{n}.log").start() for n in range(3)]
    try:
        # Killed during the first pass, while every tracker is busy: once a pass is over the
        # next one starts only a poll interval later, and in between nobody holds a lease.
        wait_until(lambda: len(carrier.requests) >= count // 3, 120, message="a third of the first pass")
        # The victim's leases (lease_owner is "host:pid:claim"): each ends at most LEASE_S after the kill.
        victim = f":{trackers[0].process.pid}:"
        # Killed while it holds shipments (between two rounds it may hold none).
        wait_until(
            lambda: (
                query(database_url, f"SELECT count(*) FROM shipments WHERE lease_owner LIKE '%{victim}%'")[0][0] >= 10
            ),
            60,
            interval=0.05,
            message="the victim holding shipments",
        )
        trackers[0].kill9()
        killed_at = time.monotonic()
        held = {
            row[0]: float(row[1])
            for row in query(
                database_url,
                "SELECT id, extract(epoch FROM lease_until - clock_timestamp()) FROM shipments "
                f"WHERE lease_owner LIKE '%{victim}%'",
            )
        }
        wait_until(
            lambda: query(database_url, "SELECT count(*) FROM shipments WHERE status <> 'delivered'")[0][0] == 0,
            timeout_s,
            interval=0.5,
            message="every shipment delivered",
        )
        for process in trackers[1:]:
            assert process.terminate() == 0, process.log_text()[-2000:]
    finally:
        for process in trackers:
            process.kill9()

    queries = [r for r in carrier.requests if r.method == "GET" and not r.path.endswith("/history")]
    assert {r.shipment_id for r in queries} == set(ids)
    first_after_kill = {}
    for r in queries:
        if r.started >= killed_at and r.shipment_id not in first_after_kill:
            first_after_kill[r.shipment_id] = r.started
    # Delayed by at most one lease: from the kill to the next query, no more than the lease,
    # plus the time the carrier's limit needs to take all of the victim's shipments back (the
    # survivors put them ahead of their own) and a little scheduling (the idle claim interval,
    # a loaded machine).
    assert held, "the victim held no leases when it was killed"
    delays = {
        shipment_id: (first_after_kill.get(shipment_id, float("inf")) - killed_at, remaining)
        for shipment_id, remaining in held.items()
    }
    print(f"victim held {len(held)}; delay from kill to re-query: max {max(d for d, _ in delays.values()):.2f} s")
    assert max(d for d, _ in delays.values()) <= LEASE_S + len(held) / LIMIT_PER_S + TAKEOVER_TOLERANCE_S, sorted(
        delays.items(), key=lambda kv: -kv[1][0]
    )[:5]
    assert carrier.max_in_flight_per_shipment() == 1
    assert busiest_second(carrier) <= LIMIT_PER_S * 1.05, busiest_second(carrier)
    rows = query(
        database_url, "SELECT count(*), sum(polls), count(*) FILTER (WHERE lease_owner IS NOT NULL) FROM shipments"
    )[0]
    assert rows[0] == count and rows[2] == 0
    # Each change was followed by the carrier's history, kept beside the status.
    assert query(database_url, "SELECT count(DISTINCT shipment_id) FROM carrier_events")[0][0] == count
    assert "Traceback" not in "".join(p.log_text() for p in trackers)


def test_three_trackers_share_six_hundred_shipments_within_the_carriers_limit_and_survive_a_kill(
    tmp_path, database_url, carrier
):
    run_three_trackers(tmp_path, database_url, carrier, 600, timeout_s=120)


@pytest.mark.chaos
@pytest.mark.timeout(1500)
def test_three_trackers_share_ten_thousand_shipments_within_the_carriers_limit_and_survive_a_kill(
    tmp_path, database_url, carrier
):
    run_three_trackers(tmp_path, database_url, carrier, 10_000, timeout_s=1200)
