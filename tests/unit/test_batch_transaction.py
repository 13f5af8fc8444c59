"""A batch of packer events in one transaction, one real commit: staged (the fast path) and
careful (a savepoint per unit of work) apply it alike."""

from __future__ import annotations

import sqlite3

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import event
from sqlalchemy.engine.base import RootTransaction
from sqlalchemy.exc import OperationalError

from contracts import parse_event
from services.domain.staged import Staging
from services.domain.tables import package_items, packages, shipments, status_changes
from services.packer.handlers import open_shipment
from shared import batch, faults
from shared.batch import BatchAbandoned, run_batch
from shared.failure import PermanentError, RetryPolicy, Verdict, decide
from shared.inbox import inbox_table
from shared.outbox import outbox_table

import contract_examples as examples


def packed(package_id: str, event_id: str | None = None, **data):
    return examples.parsed("PackagePacked", examples.packed(package_id, **data), event_id)


@pytest.fixture
def pack(db, carriers):
    """The packer's handler, wired as its service wires it (a new unit of work per event)."""
    return lambda event: db.apply("packer", open_shipment, event, carriers=carriers)


@pytest.fixture(params=["staged", "careful"])
def apply(request, db, pack):
    """Runs a batch the way the packer's worker does, or the careful way alone."""
    staging = Staging if request.param == "staged" else None
    return lambda events, handle=pack: run_batch(db.engine, handle, events, staging=staging)


def sqlite_path(db) -> str:
    return db.engine.url.database


def test_a_batch_applies_every_event_and_wakes_the_relay_once_after_its_commit(db, apply):
    events = [packed(f"PKG-{n}") for n in range(5)]

    outcomes = apply(events)

    assert [o.error for o in outcomes] == [None] * 5
    assert db.count(shipments) == 5
    assert db.count(outbox_table) == 5
    assert db.inbox_count("packer") == 5
    assert db.relay_wakeups.calls == 1


def test_a_poison_event_fails_alone_and_the_rest_of_its_batch_commits(db, apply):
    events = [packed("PKG-1"), packed("PKG-2", carrier="ghost-cargo"), packed("PKG-3")]

    outcomes = apply(events)

    assert outcomes[0].error is None and outcomes[2].error is None
    assert isinstance(outcomes[1].error, PermanentError)
    assert "unknown carrier 'ghost-cargo'" in str(outcomes[1].error)
    assert sorted(r.package_id for r in db.all(shipments.select())) == ["PKG-1", "PKG-3"]
    assert db.count(inbox_table) == 2


def test_a_unit_failing_after_it_wrote_leaves_nothing_and_the_others_commit(db, pack, apply):
    def fails_halfway(event):
        if event.data.package_id != "PKG-2":
            return pack(event)
        uow = db.uow("packer")
        with uow:
            uow.inbox.first_time(event)
            uow.packages.record_packed(event.data, event.id)
            raise RuntimeError("a bug after two writes")

    outcomes = apply([packed("PKG-1"), packed("PKG-2"), packed("PKG-3")], fails_halfway)

    assert [type(o.error) for o in outcomes] == [type(None), RuntimeError, type(None)]
    assert sorted(r.package_id for r in db.all(packages.select())) == ["PKG-1", "PKG-3"]
    assert db.count(inbox_table) == 2
    assert db.count(package_items) == 2


def test_a_duplicate_within_one_batch_is_applied_once(db, apply):
    first = packed("PKG-1")
    again = packed("PKG-1", event_id=first.id)

    outcomes = apply([first, packed("PKG-2"), again])

    assert [o.error for o in outcomes] == [None, None, None]
    assert db.count(shipments) == 2
    assert db.count(status_changes) == 2
    assert db.count(outbox_table) == 2
    assert db.inbox_count("packer") == 2


def test_nothing_of_a_batch_is_visible_to_others_before_its_commit(db, pack, apply):
    seen_during_batch = []

    def pack_and_look(event):
        pack(event)
        with sqlite3.connect(sqlite_path(db)) as reader:
            seen_during_batch.append(reader.execute("SELECT count(*) FROM shipments").fetchone()[0])

    apply([packed("PKG-1"), packed("PKG-2")], pack_and_look)

    assert seen_during_batch == [0, 0]
    assert db.count(shipments) == 2


def test_a_failed_commit_fails_every_event_applies_none_and_wakes_nothing(db, apply, monkeypatch):
    def server_gone_at_commit(transaction):
        transaction.rollback()
        raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(RootTransaction, "commit", server_gone_at_commit)
    outcomes = apply([packed("PKG-1"), packed("PKG-2", carrier="ghost-cargo"), packed("PKG-3")])
    monkeypatch.undo()

    assert [type(o.error) for o in outcomes] == [OperationalError, PermanentError, OperationalError]
    # Retried without limit: the database being away is never the message's fault.
    assert decide(outcomes[0].error, 0, RetryPolicy(1, (1.0,))).verdict is Verdict.RETRY
    assert db.count(packages) == 0
    assert db.count(inbox_table) == 0
    assert db.relay_wakeups.calls == 0


def test_events_after_the_batch_transaction_broke_are_not_attempted_and_fail_as_transient(db, pack):
    def breaks_the_transaction(event):
        if event.data.package_id == "PKG-1":
            batch.current(db.engine).connection.rollback()  # as a dropped connection leaves it
            raise ConnectionError("server closed the connection")
        pack(event)

    outcomes = run_batch(db.engine, breaks_the_transaction, [packed("PKG-1"), packed("PKG-2")])

    assert isinstance(outcomes[0].error, ConnectionError)
    assert isinstance(outcomes[1].error, BatchAbandoned)
    assert outcomes[1].error.exhausts is False
    assert db.count(packages) == 0


def test_the_crash_point_passes_once_per_unit_right_after_the_real_commit(db, apply, monkeypatch):
    killed_with = []
    monkeypatch.setattr(faults, "_ARMED", ("after_commit:packer", 2))
    monkeypatch.setattr(faults, "_counts", {})
    monkeypatch.setattr(faults.os, "kill", lambda pid, sig: killed_with.append(db.count(shipments)))

    apply([packed("PKG-1"), packed("PKG-2"), packed("PKG-3")])

    # Killed once, the second unit being applied, and only after all three had committed.
    assert killed_with == [3]


# ---- the staged path's own promises ------------------------------------------------------


def statements_of(db, batch) -> list[str]:
    seen: list[str] = []

    def note(_conn, _cursor, statement, *_args):
        if not statement.startswith("BEGIN"):  # the embedded database's own BEGIN IMMEDIATE
            seen.append(statement.split(None, 3)[2] if statement.startswith("INSERT") else statement.split()[0])

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        batch()
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    return seen


def test_a_staged_batch_writes_each_table_once_whatever_its_size(db, pack):
    events = [packed(f"PKG-{n}") for n in range(40)]

    written = statements_of(db, lambda: run_batch(db.engine, pack, events, staging=Staging))

    assert written == ["inbox", "packages", "package_items", "shipments", "shipment_status_changes", "outbox"]
    assert db.count(shipments) == 40
    assert [e.data.package_id for e in db.outbox_events()] == [f"PKG-{n}" for n in range(40)]


def test_an_event_applied_before_sends_its_batch_the_careful_way_where_it_is_ignored(db, pack):
    first = packed("PKG-1")
    run_batch(db.engine, pack, [first], staging=Staging)

    outcomes = run_batch(db.engine, pack, [packed("PKG-1", event_id=first.id), packed("PKG-2")], staging=Staging)

    assert [o.error for o in outcomes] == [None, None]
    assert db.count(shipments) == 2
    assert db.inbox_count("packer") == 2


def conflicts(event_type: str = "PackagePacked") -> float:
    return REGISTRY.get_sample_value("oms_conflicting_events_total", {"event_type": event_type}) or 0.0


def test_a_package_packed_before_with_other_content_is_dead_lettered_alone_and_counted(db, pack, apply):
    run_batch(db.engine, pack, [packed("PKG-1", order_number="ORD-FIRST")], staging=Staging)
    counted_before = conflicts()

    outcomes = apply([packed("PKG-1", order_number="ORD-AGAIN"), packed("PKG-2")])

    assert isinstance(outcomes[0].error, PermanentError)
    assert str(outcomes[0].error) == "already packed with other content"
    assert decide(outcomes[0].error, 0, RetryPolicy(12, (1.0,))).verdict is Verdict.DEAD_LETTER
    assert outcomes[1].error is None
    assert db.package("PKG-1").order_number == "ORD-FIRST"
    assert db.count(shipments) == 2
    assert db.inbox_count("packer") == 2  # the refused event is not recorded: its replay is judged as new
    assert conflicts() == counted_before + 1


def test_a_package_packed_before_with_the_same_content_under_another_id_is_a_harmless_repeat(db, pack, apply):
    run_batch(db.engine, pack, [packed("PKG-1", order_number="ORD-FIRST")], staging=Staging)

    outcomes = apply([packed("PKG-1", order_number="ORD-FIRST"), packed("PKG-2")])

    assert [o.error for o in outcomes] == [None, None]
    assert db.count(shipments) == 2
    assert db.count(status_changes) == 2
    assert db.inbox_count("packer") == 3


def test_one_package_packed_three_times_in_one_batch_keeps_the_first_and_refuses_only_other_content(db, apply):
    outcomes = apply([packed("PKG-1"), packed("PKG-1"), packed("PKG-1", order_number="ORD-OTHER")])

    assert [o.error for o in outcomes[:2]] == [None, None]
    assert str(outcomes[2].error) == "already packed with other content"
    assert db.count(shipments) == 1
    assert db.inbox_count("packer") == 2


def test_the_same_event_id_from_two_sources_is_two_events(db, apply):
    first = packed("PKG-1")
    other_source = parse_event(
        examples.to_bytes(
            examples.envelope("PackagePacked", examples.packed("PKG-2"), event_id=first.id, source="/oms/erp")
        )
    )

    outcomes = apply([first, other_source])

    assert [o.error for o in outcomes] == [None, None]
    assert sorted(r.package_id for r in db.all(shipments.select())) == ["PKG-1", "PKG-2"]
    assert db.inbox_count("packer") == 2


def test_a_row_the_database_refuses_fails_its_own_event_and_the_rest_commit(db, pack):
    # The same order item twice: the items' primary key refuses the second row. The contract
    # refuses such an event too, so it is built past the contract's checks (model_copy).
    valid = packed("PKG-2", item_ids=(7,))
    refused = valid.model_copy(update={"data": valid.data.model_copy(update={"items": valid.data.items * 2})})

    outcomes = run_batch(db.engine, pack, [packed("PKG-1"), refused, packed("PKG-3")], staging=Staging)

    assert outcomes[0].error is None and outcomes[2].error is None
    assert "UNIQUE constraint failed" in str(outcomes[1].error)
    assert sorted(r.package_id for r in db.all(shipments.select())) == ["PKG-1", "PKG-3"]
