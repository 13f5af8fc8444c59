"""The operator commands over the SQLite unit of work, as the shipper's pipeline applies them:
each with the unit of work bound to its event. A refusal leaves no inbox row (its replay is
judged as new), a duplicate is acked and changes nothing, a command waiting for its packing
is not recorded as applied."""

from __future__ import annotations

import pytest

from services.commands.handlers import cancel_package, set_shipment_status
from shared.failure import PermanentError

import contract_examples as examples


def _cancel(services, event):
    services.db.apply("shipper", cancel_package, event, carriers=services.carriers)


def test_a_refused_command_leaves_no_inbox_row_and_its_replay_is_judged_as_new(services, db):
    services.pack()
    command = examples.parsed("ShipmentStatusSet")  # delivered: not settable from pending

    for _ in range(2):
        with pytest.raises(PermanentError, match="a status is set by hand only from shipped"):
            db.apply("shipper", set_shipment_status, command)
        assert db.inbox_count("shipper") == 0
    assert db.shipment().status == "pending"


def test_a_duplicate_command_is_ignored_and_changes_nothing(services, db, carrier):
    services.pack()
    services.register()
    command = examples.parsed("PackageCancelled")
    _cancel(services, command)
    assert (db.shipment().status, carrier.deleted) == ("cancelled", [db.shipment().id])
    history, inbox = db.status_history(), db.inbox_count("shipper")

    _cancel(services, command)  # acked: nothing raised

    assert db.inbox_count("shipper") == inbox
    assert carrier.deleted == [db.shipment().id]  # the carrier is not asked again
    assert db.status_history() == history


def test_a_refused_cancellation_asks_no_carrier_and_leaves_no_inbox_row(services, db, carrier):
    services.pack()
    services.register()
    services.ship()  # handed over: refused before the carrier is asked
    inbox = db.inbox_count("shipper")

    with pytest.raises(PermanentError, match="already handed to the carrier"):
        _cancel(services, examples.parsed("PackageCancelled"))

    assert (carrier.deleted, db.inbox_count("shipper")) == ([], inbox)


def test_a_command_before_its_packing_waits_unrecorded_and_is_applied_once_it_is_packed(services, db, carrier):
    command = examples.parsed("PackageCancelled")
    _cancel(services, command)
    _cancel(services, command)  # a duplicate waits once
    assert (db.inbox_count("shipper"), db.shipment()) == (0, None)

    services.pack()
    services.register()  # the waiting cancellation is applied before any registration

    assert (db.shipment().status, carrier.registered, carrier.deleted) == ("cancelled", [], [])
    history, inbox = db.status_history(), db.inbox_count("shipper")
    _cancel(services, command)  # its copy, after the packing: applied before, so acked and nothing changes
    assert (db.status_history(), db.inbox_count("shipper"), carrier.deleted) == (history, inbox, [])
