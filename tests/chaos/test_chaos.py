"""Chaos: the whole pipeline, two processes per service, while a nemesis breaks things.

Packages with mixed fates go in as raw bytes (workload.py: some twice, some handed over
before they are packed) while the nemesis (nemesis.py) kills workers with SIGKILL, restarts the
broker and PostgreSQL, and makes the carrier and Omnitron fail or answer slowly. Then
everything is healed, every package must end final in Omnitron, and the checker
(checker.py) says what became of each: it must find none lost, regressed or
duplicated, and at most 1% of Omnitron relays repeated.

``OMS_CHAOS_SEED`` replays a run's choices (packages, fates, faults, their order).
The short slice runs in ``make test``; the whole run is marked ``chaos``.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass
from typing import Callable

import psycopg
import pytest
from psycopg.rows import dict_row

from shared import naming

import harness
from checker import Observation, Report, carrier_script, check
from nemesis import KINDS, LIGHT_KINDS, Nemesis
from workload import MANUAL_CARRIER, Commander, Feeder, Package, workload

SERVICES = ("packer", "shipper", "tracker", "omnitron-publisher")
CONSUMERS = ("packer", "shipper", "omnitron-publisher")
COPIES = 2
MAX_REPEATED_SHARE = 0.01
FINAL_TIMEOUT_S = 300

# A carrier answer a second apart: a package stays in flight for seconds, so faults meet it.
POLL_INTERVAL_S = 1.0
# Short retry tiers come from the fixture; a killed tracker's claims come back sooner
# than the default minute, and small claims let both trackers share the work.
CHAOS_ENV = {"OMS_TRACKER_LEASE_S": "15", "OMS_TRACKER_BATCH": "16"}


# ---- watching --------------------------------------------------------------------------------


def vhost_of(pipeline) -> str:
    return pipeline.amqp_url.rsplit("/", 1)[1]


def broker_queues(pipeline) -> dict[str, tuple[int, int, int]]:
    """Our queues: (ready, unacknowledged, consumers)."""
    out = harness.rabbitmqctl(
        "list_queues",
        "-p",
        vhost_of(pipeline),
        "--quiet",
        "--no-table-headers",
        "name",
        "messages_ready",
        "messages_unacknowledged",
        "consumers",
    )
    rows = [line.split() for line in out.splitlines()]
    return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows if len(r) == 4 and r[0].startswith(naming.PREFIX)}


def query(pipeline, sql: str, *params) -> list[dict]:
    with psycopg.connect(pipeline.database_url, row_factory=dict_row, connect_timeout=10) as connection:
        return connection.execute(sql, params).fetchall()


def wait_for(predicate, timeout: float, interval: float = 1.0):
    """``predicate()`` until it is truthy (returned) or the time is up (None); errors count as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if result := predicate():
                return result
        except Exception:
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def consuming(pipeline) -> bool:
    queues = broker_queues(pipeline)
    return all(queues.get(naming.work_queue(s), (0, 0, 0))[2] == COPIES for s in CONSUMERS)


def not_final(pipeline, packages: list[Package]) -> list[str]:
    """The packages with an order item whose last call in Omnitron is not its final one."""
    late = []
    for package in packages:
        for item in package.item_ids:
            calls = pipeline.omnitron.calls_for_item(item)
            if not calls or calls[-1] != package.final_call:
                late.append(package.package_id)
                break
    return late


def quiet(pipeline) -> bool:
    """Nothing stored to publish, nothing waiting or in a consumer's hands (dead letters aside)."""
    if query(pipeline, "SELECT count(*) AS n FROM outbox")[0]["n"]:
        return False
    return all(
        ready == unacked == 0
        for name, (ready, unacked, _) in broker_queues(pipeline).items()
        if not name.endswith(".dlq")
    )


def observe(pipeline, packages: list[Package]) -> list[Observation]:
    shipments = {r["package_id"]: r["id"] for r in query(pipeline, "SELECT package_id, id FROM shipments")}
    history: dict[str, list[tuple]] = {}
    for r in query(
        pipeline,
        "SELECT shipment_id, sequence, previous_status, status FROM shipment_status_changes "
        "ORDER BY shipment_id, sequence",
    ):
        history.setdefault(r["shipment_id"], []).append((r["sequence"], r["previous_status"], r["status"]))
    relays: dict[str, list[tuple]] = {}
    for r in query(pipeline, "SELECT shipment_id, sequence, outcome FROM omnitron_relays ORDER BY id"):
        relays.setdefault(r["shipment_id"], []).append((r["sequence"], r["outcome"]))
    observations = []
    for package in packages:
        shipment = shipments.get(package.package_id)
        observations.append(
            Observation(
                package.package_id,
                package.fate,
                {item: pipeline.omnitron.calls_for_item(item) for item in package.item_ids},
                history.get(shipment, []),
                relays.get(shipment, []),
            )
        )
    return observations


# ---- a run -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    report: Report
    findings: list[str]  # what else went wrong: dead letters, dead processes, a stuck pipeline
    text: str


def run_chaos(
    pipeline,
    tmp_path,
    *,
    name: str,
    packages_count: int,
    nemesis_s: float,
    kinds: tuple[str, ...] = KINDS,
    plan: Callable[[random.Random], list[str]] | None = None,
) -> Outcome:
    """``plan``: the fault kinds in order, from the run's random source; None: every kind, then at random."""
    seed = int(os.environ.get("OMS_CHAOS_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    print(
        f"\nchaos {name}: seed {seed} (OMS_CHAOS_SEED), {packages_count} packages, {nemesis_s:.0f}s of nemesis",
        flush=True,
    )
    packages, sends = workload(rng, packages_count)
    faults = plan(rng) if plan is not None else None
    fates = {p.order_number: p.fate for p in packages}
    pipeline.carrier.fate = lambda order_number: carrier_script(fates[order_number])
    carriers_file = pipeline.tmp_path / "carriers.toml"  # and a courier without integration
    carriers_file.write_text(carriers_file.read_text() + f'[carriers.{MANUAL_CARRIER}]\nintegration = "none"\n')
    running = {service: pipeline.start(service, COPIES) for service in SERVICES}
    findings: list[str] = []
    if not wait_for(lambda: consuming(pipeline), 120):
        findings.append("the services never all consumed before the run")

    started = time.monotonic()
    nemesis = Nemesis(pipeline, running, rng, nemesis_s, kinds, faults)
    feeder = Feeder(pipeline, sends, spread_s=nemesis_s * 0.9)
    commander = Commander(pipeline, packages)
    try:
        feeder.start()
        commander.start()
        nemesis.start()
        nemesis.join(nemesis_s + 300)
    finally:
        nemesis.heal()
        feeder.finish(timeout=120)
    healed_at = time.monotonic()
    commander.finish(timeout=FINAL_TIMEOUT_S)
    if commander.waiting:
        findings.append(f"never shipped, so no status set by hand: {sorted(commander.waiting)}")

    if feeder.sent < len(sends):
        findings.append(f"the feeder sent only {feeder.sent} of {len(sends)} events")
    all_final = wait_for(lambda: not not_final(pipeline, packages), FINAL_TIMEOUT_S, interval=0.5)
    final_s = time.monotonic() - healed_at
    if not all_final:
        findings.append(f"not final in Omnitron {FINAL_TIMEOUT_S}s after healing: {not_final(pipeline, packages)}")
    if not wait_for(lambda: quiet(pipeline), 120):
        findings.append(f"never quiet: outbox or queues still busy: {wait_for(lambda: broker_queues(pipeline), 30)}")
    if not wait_for(lambda: consuming(pipeline), 60):
        findings.append(f"not every consumer came back: {wait_for(lambda: broker_queues(pipeline), 30)}")
    queues = wait_for(lambda: broker_queues(pipeline), 30) or {}
    dead = {q: ready + unacked for q, (ready, unacked, _) in queues.items() if q.endswith(".dlq") and ready + unacked}
    if dead:
        findings.append(f"dead-lettered: {dead}")
    findings += nemesis.errors + nemesis.died
    for processes in running.values():
        findings += [
            f"{p.log_path.name} (pid {p.process.pid}) exited by itself: {p.process.returncode}"
            for p in processes
            if not p.alive()
        ]

    report = check(observe(pipeline, packages))
    table = report.render(f"chaos {name}, seed {seed}")
    text = "\n".join(
        [
            table,
            f"  nemesis: {len(nemesis.log)} faults over {nemesis_s:.0f}s",
            *(f"    {fault}" for fault in nemesis.log),
            f"  feeder: {feeder.sent} events sent ({len(packages)} packages), {feeder.resent} sends retried; "
            f"{commander.sent} status sets by hand",
            f"  {'every package final' if all_final else 'NOT every package final'} {final_s:.1f}s after healing; "
            f"{time.monotonic() - started:.0f}s from the first fault to the check",
            *(f"  FINDING: {finding}" for finding in findings),
        ]
    )
    print(text, flush=True)
    report_path = tmp_path / f"chaos-{name}-report.txt"
    report_path.write_text(text + "\n")
    (tmp_path / f"chaos-{name}-faults.json").write_text(json.dumps([fault.__dict__ for fault in nemesis.log]))
    return Outcome(report, findings, f"seed {seed}; report at {report_path}\n{text}")


def assert_survived(outcome: Outcome) -> None:
    counts = outcome.report.counts
    assert not outcome.findings, outcome.text
    assert (counts["lost"], counts["regressed"], counts["duplicated"], counts["unexpected"]) == (0, 0, 0, 0), (
        outcome.text
    )
    assert outcome.report.repeated_share <= MAX_REPEATED_SHARE, outcome.text


# ---- the tests -------------------------------------------------------------------------------


@pytest.mark.timeout(900)
def test_a_short_slice_of_chaos_with_a_kill_and_a_broker_restart_loses_and_regresses_nothing(
    pipeline_factory, tmp_path
):
    pipeline = pipeline_factory(poll_interval_s=POLL_INTERVAL_S, extra_env=CHAOS_ENV)

    def plan(rng: random.Random) -> list[str]:
        kinds = ["kill9", "broker_restart", *rng.sample(LIGHT_KINDS, 2)]
        rng.shuffle(kinds)
        return kinds

    # 50 packages, not fewer: a publisher killed after its Omnitron call repeats that call
    # for up to three items, which must stay within 1% of the relays (about 450 here).
    outcome = run_chaos(pipeline, tmp_path, name="short", packages_count=50, nemesis_s=30, plan=plan)
    assert_survived(outcome)


@pytest.mark.chaos
@pytest.mark.timeout(1800)
def test_three_minutes_of_every_fault_lose_regress_and_duplicate_nothing(pipeline_factory, tmp_path):
    pipeline = pipeline_factory(poll_interval_s=POLL_INTERVAL_S, extra_env=CHAOS_ENV)
    outcome = run_chaos(pipeline, tmp_path, name="whole", packages_count=200, nemesis_s=180)
    assert_survived(outcome)
