"""The packer applies the deliveries that arrived together in one transaction, yet each
message keeps its own fate: a poison is dead-lettered with its reason, one that fails
transiently is retried until it applies, a duplicate is applied once, and the rest of
their batch commits.

The packer runs as ``oms-shipments run packer`` against RabbitMQ and PostgreSQL; the
events are published before it starts, so they are waiting when it takes its batches.
A transient failure is a PostgreSQL trigger refusing one package's insert with
``lock_not_available`` until the test lifts it.
"""

from __future__ import annotations

import json

import psycopg

from shared import naming

import harness
from events import package_packed, to_bytes
from harness import wait_until

GOOD = 20
POISON_AT, FLAKY_AT, DUPLICATE_AT = 5, 12, 16

FLAKY_TRIGGER = """
CREATE TABLE flaky (package_id text PRIMARY KEY);
INSERT INTO flaky VALUES ('PKG-FLAKY');
CREATE FUNCTION refuse_flaky() RETURNS trigger AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM flaky WHERE package_id = NEW.package_id) THEN
    RAISE EXCEPTION 'could not lock package %', NEW.package_id USING ERRCODE = 'lock_not_available';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER refuse_flaky BEFORE INSERT ON packages FOR EACH ROW EXECUTE FUNCTION refuse_flaky();
"""


def sql(pipeline, statement: str, *params):
    with psycopg.connect(pipeline.database_url, autocommit=True) as connection:
        cursor = connection.execute(statement, params or None)
        return cursor.fetchall() if cursor.description else None


def count(pipeline, statement: str, *params) -> int:
    return sql(pipeline, statement, *params)[0][0]


def start_packer(pipeline) -> harness.ServiceProcess:
    # DEBUG: the worker logs each batch it settled, with its message ids.
    env = {**pipeline.env, "OMS_LOG_LEVEL": "DEBUG"}
    process = harness.ServiceProcess("packer", env, pipeline.tmp_path / "packer.log").start()
    pipeline.processes.append(process)
    return process


def log_lines(process: harness.ServiceProcess, event: str) -> list[dict]:
    lines = []
    for line in process.log_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == event:
            lines.append(entry)
    return lines


def test_a_batch_commits_around_a_poison_a_transient_failure_and_a_duplicate(pipeline):
    sql(pipeline, FLAKY_TRIGGER)
    good = [package_packed(f"PKG-{n:03d}", f"ORD-{n:03d}", [30_000 + n]) for n in range(GOOD)]
    poison = package_packed("PKG-POISON", "ORD-POISON", [39_998], carrier="ghost-cargo")
    flaky = package_packed("PKG-FLAKY", "ORD-FLAKY", [39_999])
    sent = list(good)
    sent.insert(DUPLICATE_AT + 1, good[DUPLICATE_AT])  # the same event id twice, side by side
    sent.insert(FLAKY_AT, flaky)
    sent.insert(POISON_AT, poison)
    for event in sent:
        pipeline.publisher.publish("package.packed", to_bytes(event), message_id=event["id"], event_type=event["type"])

    packer = start_packer(pipeline)

    # Every good package is applied while the flaky one still fails.
    wait_until(lambda: count(pipeline, "SELECT count(*) FROM shipments") == GOOD, 60, message="the good packages")
    retried = wait_until(
        lambda: [e for e in log_lines(packer, "handler failed, will retry") if e["message_id"] == flaky["id"]],
        30,
        message="the flaky package's retry",
    )
    assert retried[0]["error_class"] == "OperationalError"
    assert "could not lock package PKG-FLAKY" in retried[0]["error"]
    assert count(pipeline, "SELECT count(*) FROM packages WHERE package_id = 'PKG-FLAKY'") == 0

    # They were applied in batches, and each failure had neighbours in its batch that committed.
    batches = log_lines(packer, "batch settled")
    for failing in (poison["id"], flaky["id"]):
        batch = next(b for b in batches if failing in b["failed"])
        assert batch["size"] > 1 and batch["applied"] >= 1, batch
    duplicate_id = good[DUPLICATE_AT]["id"]
    assert any(b["message_ids"].count(duplicate_id) == 2 and duplicate_id not in b["failed"] for b in batches), (
        "both copies of the duplicate were applied in one batch"
    )

    # The poison is dead-lettered once, with its reason.
    dead = wait_until(
        lambda: pipeline.publisher.get_all(naming.dead_letter_queue("packer")),
        10,
        message="the poison in the dead-letter queue",
    )
    assert [properties.message_id for properties, _ in dead] == [poison["id"]]
    headers = dead[0][0].headers
    assert headers[naming.HEADER_ERROR_CLASS] == "PermanentError"
    assert "unknown carrier 'ghost-cargo'" in headers[naming.HEADER_ERROR_MESSAGE]

    # Lifted, the transient failure heals on its next retry.
    sql(pipeline, "DELETE FROM flaky")
    wait_until(lambda: count(pipeline, "SELECT count(*) FROM shipments") == GOOD + 1, 30, message="the flaky package")

    # Each event applied once: one package, shipment, status change and inbox row each,
    # and one pending event relayed to the shipper's queue for each.
    assert count(pipeline, "SELECT count(*) FROM packages") == GOOD + 1
    assert count(pipeline, "SELECT count(*) FROM shipment_status_changes") == GOOD + 1
    assert count(pipeline, "SELECT count(*) FROM inbox WHERE consumer = 'packer'") == GOOD + 1
    assert (
        count(
            pipeline,
            "SELECT count(*) FROM package_items WHERE package_id = %s",
            good[DUPLICATE_AT]["data"]["package_id"],
        )
        == 1
    )
    wait_until(lambda: count(pipeline, "SELECT count(*) FROM outbox") == 0, 10, message="the outbox to empty")
    wait_until(
        lambda: pipeline.publisher.queue_depth(naming.work_queue("shipper")) == GOOD + 1,
        10,
        message="one pending event per shipment",
    )
    wait_until(
        lambda: pipeline.publisher.queue_depth(naming.work_queue("packer")) == 0,
        10,
        message="the packer's queue to empty",
    )
    assert pipeline.publisher.queue_depth(naming.dead_letter_queue("packer")) == 0
    assert packer.terminate() == 0
    assert "Traceback" not in packer.log_text()
