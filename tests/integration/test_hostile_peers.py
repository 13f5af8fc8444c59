"""Hostile peers, one shipment among many normal ones, against the real services (CONTRACT.md §4, §5).

A real ``oms-shipments run tracker`` process polls shipments seeded into PostgreSQL; the
sandbox carrier answers a few of them with hostile bytes (``services/standins/hostile.py``)
and the rest normally. The normal ones must all be delivered on time, the hostile ones
must stay as they were with a logged error naming them, and nothing may pause the carrier
for longer than ``OMS_MAX_RETRY_AFTER_S``. The pipeline test does the same for the
shipper's registration and the Omnitron publisher's calls.
"""

from __future__ import annotations

import json
import os
import threading
from types import SimpleNamespace

import pytest
from structlog.testing import capture_logs
from test_tracker_scale import CARRIER_PASSWORD, query, seed

from services.carriers.shipment_flows import CarrierConfig, CarrierEvent, CarrierSnapshot
from services.domain.uow import UnitOfWork
from services.standins import hostile
from services.tracker.poller import Tracker
from shared import naming
from shared.db import make_engine

import harness
from events import package_packed, package_shipped, to_bytes
from harness import wait_until

NORMAL_COUNT = 120
#: Each hostile shipment's answer to its query; two more break only their history.
QUERY_ANSWERS = {**hostile.CARRIER_ANSWERS, "drip": hostile.drip, "unknown_status": hostile.unknown_status}
HISTORY_ANSWERS = {
    "history_events_not_a_list": hostile.history_events_not_a_list,
    "history_oversized": hostile.oversized,
}


def start_tracker(tmp_path, database_url, carrier, **env):
    carriers_file = harness.write_carriers_file(
        tmp_path / "carriers.toml",
        {
            "sandbox": {
                "url": carrier.url,
                "username": "user",
                "password": CARRIER_PASSWORD,
                "api_version": "1",
                "poll_interval_s": 1,
                "max_requests_per_s": 200,
                "timeout_s": 2,
            }
        },
    )
    process_env = {
        **os.environ,
        "OMS_DATABASE_URL": database_url,
        "OMS_AMQP_URL": "memory://",
        "OMS_CARRIERS_FILE": str(carriers_file),
        "OMS_TRACKER_IDLE_S": "0.1",
        "OMS_LOG_FORMAT": "json",
        "OMS_METRICS_PORT": "0",
        **env,
    }
    return harness.ServiceProcess("tracker", process_env, tmp_path / "tracker.log").start()


def log_records(process) -> list[dict]:
    records = []
    for line in process.log_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pass
    return records


def statuses(database_url: str) -> dict[str, str]:
    return dict(query(database_url, "SELECT id, status FROM shipments"))


@pytest.mark.parametrize("normal_count", [NORMAL_COUNT, pytest.param(3000, marks=pytest.mark.soak)])
def test_hostile_carrier_answers_are_errors_for_their_shipments_and_the_others_are_delivered_on_time(
    tmp_path, database_url, carrier, normal_count
):
    names = [*QUERY_ANSWERS, *HISTORY_ANSWERS]
    ids = seed(database_url, carrier, normal_count + len(names))
    hostile_ids = dict(zip(names, ids[:: (len(ids) // len(names))]))  # spread among the normal ones
    for name, shipment_id in hostile_ids.items():
        if name in HISTORY_ANSWERS:
            carrier.misbehave(
                shipment_id, HISTORY_ANSWERS[name](shipment_id), when=lambda method, path: path.endswith("/history")
            )
        else:
            carrier.misbehave(shipment_id, QUERY_ANSWERS[name](shipment_id))
    by_query = {shipment_id for name, shipment_id in hostile_ids.items() if name in QUERY_ANSWERS}
    normal = set(ids) - by_query
    tracker = start_tracker(tmp_path, database_url, carrier)
    try:
        # Three polls each (SHIPPING, SHIPPING, DELIVERED) a second apart, 120 shipments within
        # the carrier's limit: a few seconds; the rest is room for a loaded machine.
        # At 200 requests/s, three polls and a history each: 60 s is ample for 120, and scales.
        wait_until(
            lambda: all(statuses(database_url)[i] == "delivered" for i in normal),
            60 + len(normal) * 4 / 200,
            interval=0.5,
            message="every normal shipment delivered",
        )
        # Each hostile one has been asked more than once meanwhile, and is asked still.
        wait_until(
            lambda: all(sum(r.shipment_id == i for r in carrier.requests) >= 2 for i in by_query),
            30,
            message="every hostile shipment asked again",
        )
        assert tracker.alive(), tracker.log_text()[-3000:]
    finally:
        assert tracker.terminate() == 0, tracker.log_text()[-3000:]

    current = statuses(database_url)
    assert {i: current[i] for i in by_query} == {i: "shipped" for i in by_query}, "a hostile answer moved a shipment"
    records = log_records(tracker)
    failed = {r.get("shipment_id") for r in records if r.get("event") == "carrier query failed"}
    answer_errors = by_query - {hostile_ids["unknown_status"]}
    assert answer_errors <= failed, {n: i for n, i in hostile_ids.items() if i in answer_errors - failed}
    assert hostile_ids["unknown_status"] not in failed  # readable: kept as it is, with a warning
    assert any(r.get("event") == "carrier.unknown_status" and r.get("carrier_status") == "TELEPORTED" for r in records)
    history_failed = {r.get("shipment_id") for r in records if r.get("event") == "carrier history failed"}
    assert {hostile_ids[n] for n in HISTORY_ANSWERS} <= history_failed
    # A broken history never holds back the status: those two are delivered, without events.
    assert all(current[hostile_ids[n]] == "delivered" for n in HISTORY_ANSWERS)
    # No hostile answer paused the carrier for the others.
    assert not [r for r in records if r.get("event") == "carrier paused"]
    assert "Traceback" not in tracker.log_text()


@pytest.mark.parametrize(
    "value",
    ["86400", "nan", pytest.param("-1", marks=pytest.mark.soak), pytest.param("tomorrow", marks=pytest.mark.soak)],
)
def test_a_carrier_pause_from_a_retry_after_never_exceeds_the_bound(tmp_path, database_url, carrier, value):
    ids = seed(database_url, carrier, 60)
    carrier.misbehave(ids[0], hostile.retry_after(value))
    tracker = start_tracker(tmp_path, database_url, carrier, OMS_MAX_RETRY_AFTER_S="3")
    try:
        wait_until(
            lambda: any(r.get("event") == "http.retry_after_bounded" for r in log_records(tracker)),
            30,
            message="the bounded Retry-After logged",
        )
        paused_for, hostile_due_in = query(
            database_url,
            f"""
            SELECT (SELECT extract(epoch FROM paused_until - clock_timestamp()) FROM carrier_pacing),
                   (SELECT extract(epoch FROM next_poll_at - clock_timestamp()) FROM shipments
                     WHERE id = '{ids[0]}' AND lease_owner IS NULL)""",
        )[0]
        assert paused_for is None or float(paused_for) <= 3.0
        assert hostile_due_in is None or float(hostile_due_in) <= 3.0
        wait_until(
            lambda: all(s == "delivered" for i, s in statuses(database_url).items() if i != ids[0]),
            60,
            interval=0.5,
            message="every other shipment delivered after the bounded pause",
        )
    finally:
        assert tracker.terminate() == 0, tracker.log_text()[-3000:]
    paused = [r for r in log_records(tracker) if r.get("event") == "carrier paused"]
    assert paused and all(r["pause_s"] <= 3 for r in paused)


def test_a_hostile_registration_answer_and_a_hostile_omnitron_answer_hold_up_only_their_own_package(pipeline_factory):
    """Twenty packages; the carrier answers one registration with a body over 1 MiB, Omnitron
    answers one other package's order item with a dripping answer. The publisher handles one
    message at a time (the default), so each attempt of the dripping call holds the others up
    for its deadline and no longer: a short timeout keeps the test short."""
    pipeline = pipeline_factory(extra_env={"OMS_OMNITRON_TIMEOUT_S": "1.5"})
    packages = [(f"PKG-H{n:02d}", f"ORD-H{n:02d}", [70_000 + n]) for n in range(20)]
    bad_registration, bad_omnitron = packages[3], packages[11]
    pipeline.omnitron.misbehave(str(bad_omnitron[2][0]), hostile.drip("x", seconds=60))
    pipeline.start("packer")
    for package_id, order_number, items in packages:
        pipeline.publisher.publish(
            "package.packed",
            to_bytes(event := package_packed(package_id, order_number, items)),
            message_id=event["id"],
            event_type=event["type"],
        )
    wait_until(
        lambda: len(query(pipeline.database_url, "SELECT id FROM shipments")) == len(packages),
        60,
        message="every shipment opened",
    )
    [(hostile_shipment,)] = query(
        pipeline.database_url, f"SELECT id FROM shipments WHERE package_id = '{bad_registration[0]}'"
    )
    pipeline.carrier.misbehave(hostile_shipment, hostile.oversized(hostile_shipment))
    for service in ("shipper", "tracker", "omnitron-publisher"):
        pipeline.start(service)
    for package_id, _, _ in packages:
        pipeline.publisher.publish(
            "package.shipped",
            to_bytes(event := package_shipped(package_id)),
            message_id=event["id"],
            event_type=event["type"],
        )

    normal = [p for p in packages if p not in (bad_registration, bad_omnitron)]
    wait_until(
        lambda: all(
            pipeline.omnitron.calls_for_item(items[0])[-1:] in ([("bulk", "550")], [("extra", "delivery_failed")])
            for _, _, items in normal
        ),
        90,
        interval=0.5,
        message="every normal package final at Omnitron",
    )
    assert pipeline.omnitron.calls_for_item(bad_omnitron[2][0]) == []
    [(registration_status,)] = query(
        pipeline.database_url, f"SELECT status FROM shipments WHERE id = '{hostile_shipment}'"
    )
    assert registration_status in ("pending", "shipped")  # never registered with the broken answer
    logs = pipeline.logs()
    assert hostile_shipment in logs and "over 1048576" in logs
    assert "the request's total deadline passed" in logs or "ReadTimeout" in logs
    assert all(process.alive() for process in pipeline.processes)
    assert "Traceback" not in logs


class _AnswersAParserWouldStop:
    """A carrier client whose answers skip the parser: one history text holds U+0000, as if a
    check in ``shipment_flows`` had a gap. The writer must not let it hold back the batch."""

    def __init__(self, bad_id: str):
        self.bad_id = bad_id

    async def query(self, shipment_id: str, timeout_s: float | None = None) -> CarrierSnapshot:
        return CarrierSnapshot("SBX1", "DELIVERED", None, None)

    async def history(self, shipment_id: str, timeout_s: float | None = None) -> list[CarrierEvent]:
        text = "Delivered\x00" if shipment_id == self.bad_id else "Delivered"
        return [CarrierEvent("DELIVERED", None, text, "Istanbul")]

    async def aclose(self) -> None:
        pass


class _Directory:
    def __init__(self, client):
        self.configs = {"sandbox": CarrierConfig(code="sandbox", url="http://127.0.0.1:9", username="u", password="p")}
        self._client = client

    def open_async(self, code: str, max_connections: int = 256):
        return self._client


def test_an_answer_the_database_refuses_is_recorded_as_a_failed_poll_and_the_rest_of_its_batch_is_written(database_url):
    ids = seed(database_url, SimpleNamespace(_shipments={}), 40)
    engine = make_engine(database_url)
    try:
        tracker = Tracker(
            uow=lambda: UnitOfWork(engine, "tracker", naming.event_source("tracker")),
            carriers=_Directory(_AnswersAParserWouldStop(ids[7])),
            stop=threading.Event(),
            engine=engine,
            batch=100,
            lease_s=60,
            idle_s=0.01,
            concurrency=4,
        )
        with capture_logs() as logs:
            assert tracker.poll_once() == len(ids)
    finally:
        engine.dispose()
    current = statuses(database_url)
    assert {i: s for i, s in current.items() if i != ids[7]} == {i: "delivered" for i in ids if i != ids[7]}
    assert current[ids[7]] == "shipped"
    assert query(database_url, f"SELECT lease_owner FROM shipments WHERE id = '{ids[7]}'") == [(None,)]
    assert [e["shipment_id"] for e in logs if e["event"].startswith("carrier answer refused by the database")] == [
        ids[7]
    ]
