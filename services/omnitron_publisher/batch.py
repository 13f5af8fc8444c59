"""Status changes relayed in batches: one bulk call carries several packages' items (CONTRACT.md §5).

The worker hands over the deliveries that have arrived (up to ``OMS_BATCH_SIZE``). Each is
parsed once, and the changes they name are read as the services recorded them. Then they
go out in waves: wave *k* holds the *k*-th change of each shipment in the batch (by
sequence), and a wave is answered before the next one starts, so each shipment's changes
reach Omnitron in sequence order.

In a wave, the changes with an Omnitron status code go out together, up to
``OMS_OMNITRON_BULK_PACKAGES`` packages in **one** ``bulk_status_update`` call carrying all
their items (never two entries for one order item), under one transaction that holds every
one of their cursors and item rows, as a single change's relay does (``handlers.py``). The
price: a publisher killed between such a call and its commit repeats it for every package
in it (one alone repeats one package's), so the default is 1: no batches, each change
alone (handlers.py), as before. A ``4xx`` to that call is tried again as one
call per change, so one bad item holds back no other; a change whose own call gets a
``4xx`` is dead-lettered with Omnitron's answer. The other changes (``extra_field``, one
call per order item) are relayed one by one by :func:`~services.omnitron_publisher.handlers.relay_to_omnitron`,
each committed before the next call: a crash repeats only the call in hand.

A change that cannot go now (Omnitron unavailable) holds back the shipment's later
changes in the batch: they are retried with it, never sent before it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Sequence

from sqlalchemy import Engine

from contracts import OMNITRON_ITEM_STATUS, CloudEvent, ShipmentStatusChanged
from services.domain.repository import FollowedItems, OmnitronRelayLog, ShipmentRepository
from services.omnitron_publisher.handlers import _settled_by, _unsettled_until
from services.omnitron_publisher.omnitron import BULK_STATUS_PATH, OmnitronCall, OmnitronClient, plan_calls
from services.runtime.pipeline import Pipeline
from shared.batch import Handled
from shared.failure import DependencyDown, PermanentError, TransientError
from shared.faults import crash_point
from shared.http import PermanentHTTPError, TransientHTTPError
from shared.inbox import Inbox
from shared.logging import get_logger

log = get_logger(service="omnitron-publisher", component="batch")


class HeldBack(TransientError):
    """An earlier change of the same shipment in the batch could not go: this one waits with it."""

    exhausts = False  # never the message's fault


@dataclass
class _Change:
    """One delivery of the batch, and what became of it."""

    index: int
    event: CloudEvent
    recorded: ShipmentStatusChanged | None = None
    error: BaseException | None = None
    started: float = field(default_factory=time.perf_counter)
    elapsed_s: float | None = None

    def done(self, error: BaseException | None = None) -> None:
        self.error = error
        self.elapsed_s = time.perf_counter() - self.started

    @property
    def named(self) -> ShipmentStatusChanged:
        return self.event.data


class BatchRelay:
    """Relays a batch of deliveries; one outcome per delivery, in their order."""

    def __init__(
        self,
        *,
        engine: Engine,
        consumer: str,
        pipeline: Pipeline,
        omnitron: OmnitronClient,
        settle_s: float = 60.0,
        bulk_packages: int = 100,
        companies: Mapping[str, str] | None = None,
    ):
        self._engine = engine
        self._consumer = consumer
        self._pipeline = pipeline
        self._omnitron = omnitron
        self._settle_s = settle_s
        self._bulk_packages = max(1, bulk_packages)
        self._companies = companies
        # One batch at a time per process, in the order they arrive: with several handler
        # threads, a later batch must not overtake an earlier one holding the same shipment.
        self._one_at_a_time = threading.Lock()

    def __call__(self, _handle, deliveries: Sequence) -> list[Handled]:
        with self._one_at_a_time:
            return self.relay(deliveries)

    def relay(self, deliveries: Sequence) -> list[Handled]:
        outcomes: list[Handled | None] = [None] * len(deliveries)
        changes: list[_Change] = []
        first_of: dict[tuple[str, str], _Change] = {}
        copies: list[tuple[int, _Change]] = []
        for index, delivery in enumerate(deliveries):
            try:
                event = self._pipeline.event_of(delivery)  # decoded once, on arrival
            except Exception as exc:
                outcomes[index] = Handled(exc, 0.0)
                continue
            key = (event.source, event.id)
            if key in first_of:  # the same event twice in one batch: it shares the first copy's fate
                copies.append((index, first_of[key]))
                continue
            first_of[key] = _Change(index, event)
            changes.append(first_of[key])
        self._read(changes)
        held: dict[str, BaseException] = {}
        for wave in _waves(changes):
            for change in wave:
                if change.named.shipment_id in held:
                    change.done(HeldBack(f"an earlier change of its shipment failed: {held[change.named.shipment_id]}"))
            self._wave([c for c in wave if c.elapsed_s is None])
            for change in wave:
                if change.error is not None and not isinstance(change.error, PermanentError):
                    held.setdefault(change.named.shipment_id, change.error)
        for change in changes:
            outcomes[change.index] = Handled(change.error, change.elapsed_s or 0.0)
        for index, first in copies:
            outcomes[index] = Handled(first.error, first.elapsed_s or 0.0)
        return outcomes

    def _read(self, changes: list[_Change]) -> None:
        """The changes as recorded; one the services never recorded goes the single way (and is refused)."""
        if not changes:
            return
        try:
            with self._engine.connect() as connection:
                shipments = ShipmentRepository(connection)
                for change in changes:
                    change.recorded = shipments.recorded_change(change.named.shipment_id, change.named.sequence)
                connection.rollback()
        except Exception as exc:  # the database away: none of them is tried (a bad message still fails alone)
            for change in changes:
                change.done(exc)

    def _wave(self, wave: list[_Change]) -> None:
        bulk = [c for c in wave if c.recorded is not None and c.recorded.status in OMNITRON_ITEM_STATUS]
        for start in range(0, len(bulk), self._bulk_packages):
            together = bulk[start : start + self._bulk_packages]
            if len(together) > 1:
                self._relay_together(together)
        for change in wave:
            if change.elapsed_s is None:
                self._relay_alone(change)

    def _relay_alone(self, change: _Change) -> None:
        try:
            self._pipeline.apply(change.event)
        except BaseException as exc:  # a handler's failure is data for the policy
            change.done(exc)
        else:
            change.done()

    # -- several packages' changes in one bulk call --------------------------------------
    def _relay_together(self, changes: list[_Change]) -> None:
        try:
            with self._engine.connect() as connection:
                with connection.begin():
                    fates = self._together(connection, changes)
        except BaseException as exc:  # the database: nothing of the group was recorded
            for change in changes:
                change.done(exc)
            return
        applied = [c for c in changes if c.index in fates and fates[c.index] is None]
        crash_point(f"after_commit:{self._consumer}", units=len(applied))
        for change in changes:
            change.done(fates.get(change.index))
        for change in applied:
            log.info(
                "relayed to Omnitron",
                event_id=change.event.id,
                shipment_id=change.recorded.shipment_id,
                status=change.recorded.status.value,
                sequence=change.recorded.sequence,
                together=len(changes),
            )

    def _together(self, connection, changes: list[_Change]) -> dict[int, BaseException | None]:
        """Sends the group's bulk call(s) inside the open transaction; each change's failure (None: applied)."""
        inbox, relays = Inbox(connection, self._consumer), OmnitronRelayLog(connection)
        fates: dict[int, BaseException | None] = {}
        fresh = []
        for change in changes:
            if inbox.first_time(change.event):
                fresh.append(change)
            else:
                log.info("duplicate event ignored", event_id=change.event.id)
                fates[change.index] = None
        last = {
            shipment_id: relays.lock_last_sequence(shipment_id)
            for shipment_id in sorted({c.recorded.shipment_id for c in fresh})
        }
        sending = []
        for change in fresh:
            recorded = change.recorded
            if recorded.sequence <= last[recorded.shipment_id]:
                log.info(
                    "older than the last relayed change; not sent",
                    sequence=recorded.sequence,
                    last_relayed_sequence=last[recorded.shipment_id],
                    shipment_id=recorded.shipment_id,
                )
                relays.record_skipped(recorded, change.event.id)
                fates[change.index] = None
            else:
                sending.append(change)
        items = relays.lock_followed_items_of({c.recorded.shipment_id for c in sending}) if sending else {}
        planned = {}
        for change in sending:
            followed: FollowedItems = items[change.recorded.shipment_id]
            planned[change.index] = plan_calls(
                change.recorded.model_copy(
                    update={"order_item_ids": followed.followed(change.recorded.order_item_ids)}
                ),
                self._companies,
            )
        unsettled: dict[int, bool] = {}
        failed: dict[int, BaseException] = {}
        for call, members in _merged(sending, planned):
            self._send(call, members, planned, unsettled, failed)
        for change in sending:
            recorded, followed = change.recorded, items[change.recorded.shipment_id]
            failure = failed.get(change.index)
            if failure is None:
                calls = planned[change.index]
                relays.record_sent(recorded, [call.to_json() for call in calls], change.event.id, followed.superseded)
                settled_by = _unsettled_until(unsettled.get(change.index, False), bool(calls), followed, self._settle_s)
                if settled_by is not None:
                    relays.mark_unsettled(recorded.shipment_id, recorded.sequence, settled_by)
                if followed.superseded:
                    log.info(
                        "order items followed by a package packed later; not sent for them",
                        order_item_ids=sorted(followed.superseded),
                        sequence=recorded.sequence,
                    )
                fates[change.index] = None
                continue
            inbox.forget(change.event)  # judged as new when it comes again
            if isinstance(failure, TransientHTTPError):
                if unsettled.get(change.index) or failure.ambiguous:
                    # The cursor is ours: the mark commits with the rest of the group.
                    relays.mark_unsettled(recorded.shipment_id, recorded.sequence, _settled_by(self._settle_s))
                    log.warning(
                        "Omnitron call unanswered; it may still land",
                        sequence=recorded.sequence,
                        settle_s=self._settle_s,
                    )
                failure = DependencyDown(f"Omnitron unavailable: {failure}", retry_after_s=failure.retry_after)
            fates[change.index] = failure
        return fates

    def _send(self, call: OmnitronCall, members: list[_Change], planned: dict, unsettled: dict, failed: dict) -> None:
        try:
            sent = self._omnitron.send(call)
        except PermanentHTTPError as refused:
            if len(members) == 1:
                failed[members[0].index] = refused
                return
            log.warning(
                "Omnitron refused a call of several changes; one call per change",
                changes=len(members),
                error=str(refused),
            )
            for member in members:
                [own] = planned[member.index]
                self._send(own, [member], planned, unsettled, failed)
            return
        except TransientHTTPError as down:
            for member in members:
                failed[member.index] = down
            return
        for member in members:
            unsettled[member.index] = unsettled.get(member.index, False) or sent.unsettled
        crash_point("after_omnitron_call")


def _merged(sending: list[_Change], planned: dict) -> list[tuple[OmnitronCall, list[_Change]]]:
    """The group's calls: one bulk call for all, or as few as keep each order item to one entry."""
    calls: list[tuple[list[dict], set[int], list[_Change]]] = []
    for change in sending:
        for call in planned[change.index]:
            ids = set(call.order_item_ids)
            for entries, held, members in calls:
                if not held & ids:
                    entries += call.body["orderitem_set"]
                    held |= ids
                    members.append(change)
                    break
            else:
                calls.append((list(call.body["orderitem_set"]), ids, [change]))
    return [
        (
            OmnitronCall(
                "PATCH", BULK_STATUS_PATH, {"orderitem_set": entries}, tuple(entry["id"] for entry in entries)
            ),
            members,
        )
        for entries, _, members in calls
    ]


def _waves(changes: list[_Change]) -> list[list[_Change]]:
    """Wave k: the k-th change of each shipment, by sequence (an unknown one alone, first)."""
    by_shipment: dict[str, list[_Change]] = {}
    for change in changes:
        by_shipment.setdefault(change.named.shipment_id, []).append(change)
    waves: list[list[_Change]] = []
    for shipment_changes in by_shipment.values():
        shipment_changes.sort(key=lambda c: c.named.sequence)
        for k, change in enumerate(shipment_changes):
            if k == len(waves):
                waves.append([])
            waves[k].append(change)
    return waves
