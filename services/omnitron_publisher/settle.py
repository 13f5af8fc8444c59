"""Unsettled Omnitron calls: the newest status is sent again once they have settled.

A call that got no answer (a read timeout, a dropped connection, a gateway's 504) may
still be processed by Omnitron later — after a newer change of the same shipment went
through, which would leave Omnitron showing the older status. The publisher cannot
recall a request it no longer holds; it can send the newest one again after it.

So such a call marks the shipment unsettled until ``OMS_OMNITRON_SETTLE_S`` after it (by
then Omnitron has processed it or never will), and this loop, in every publisher
process, then sends the newest relayed change again, under the same row lock the
handlers take. If the unanswered change itself has not been relayed yet (Omnitron still
down), re-sending an older one could undo it, so the loop waits for it. Order items a
package packed later has taken over since are left out of the resend (they follow that
package now).
"""

from __future__ import annotations

import threading
from datetime import timedelta

from prometheus_client import Counter
from sqlalchemy import Engine

from services.domain.repository import FollowedItems, OmnitronRelayLog, UnsettledRelay
from services.omnitron_publisher.omnitron import OmnitronCall, OmnitronClient
from shared.db import utcnow
from shared.http import PermanentHTTPError, TransientHTTPError
from shared.logging import get_logger

log = get_logger(service="omnitron-publisher", component="settle")

RESENDS = Counter(
    "oms_omnitron_resends_total",
    "Newest statuses sent to Omnitron again after an unanswered call, by outcome.",
    ["outcome"],
)

#: Shipments settled per round; the rest wait for the next.
ROUND_LIMIT = 100


class UnsettledCalls:
    def __init__(
        self, *, engine: Engine, omnitron: OmnitronClient, stop: threading.Event, settle_s: float, every_s: float = 1.0
    ):
        self._engine = engine
        self._omnitron = omnitron
        self._stop = stop
        self._settle_s = settle_s
        self._every_s = every_s

    def run(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self.settle_due()
            except Exception as exc:  # the database away: the marks stay, the next round retries
                log.warning("unsettled Omnitron calls not checked", error=str(exc), error_class=type(exc).__name__)

    def settle_due(self) -> int:
        """Each shipment whose unanswered calls have settled: its newest status sent again. How many."""
        with self._engine.connect() as connection:
            due = OmnitronRelayLog(connection).due_unsettled(utcnow(), ROUND_LIMIT)
        return sum(self._settle(shipment_id) for shipment_id in due)

    def _settle(self, shipment_id: str) -> bool:
        with self._engine.begin() as connection:
            relays = OmnitronRelayLog(connection)
            now = utcnow()
            state = relays.lock_unsettled(shipment_id, now)
            if state is None:
                return False
            later = now + timedelta(seconds=self._settle_s)
            if state.last_sequence < state.unsettled_sequence:
                # The unanswered change is still to be relayed; sending an older one could undo it.
                relays.postpone_unsettled(shipment_id, state.unsettled_sequence, later)
                return False
            if state.last_relay is None:
                relays.settled(shipment_id)
                return False
            outcome = self._resend(state, relays.lock_followed_items(shipment_id))
            if outcome == "unsettled":
                relays.postpone_unsettled(shipment_id, state.last_sequence, later)  # the resend is now the one
                return False
            relays.settled(shipment_id)
            if outcome == "sent":
                relays.record_resent(shipment_id, state.last_relay)
            return outcome == "sent"

    def _resend(self, state: UnsettledRelay, items: FollowedItems) -> str:
        relay = state.last_relay
        try:
            unsettled = False
            for call in still_followed(relay["calls"], items):
                unsettled = self._omnitron.send(call).unsettled or unsettled
        except TransientHTTPError as exc:
            RESENDS.labels("failed").inc()
            log.warning(
                "newest status not sent again yet",
                shipment_id=state.shipment_id,
                sequence=relay["sequence"],
                error=str(exc),
                retry_in_s=self._settle_s,
            )
            return "unsettled"
        except PermanentHTTPError as exc:  # Omnitron will not take it again (an order closed since)
            RESENDS.labels("refused").inc()
            log.warning(
                "Omnitron refused the newest status sent again",
                shipment_id=state.shipment_id,
                sequence=relay["sequence"],
                error=str(exc),
            )
            return "refused"
        RESENDS.labels("sent").inc()
        log.info(
            "newest status sent again after an unanswered call",
            shipment_id=state.shipment_id,
            status=relay["status"],
            sequence=relay["sequence"],
            unsettled_before=state.unsettled_sequence,
        )
        return "unsettled" if unsettled else "sent"


def still_followed(stored_calls: list[dict], items: FollowedItems) -> list[OmnitronCall]:
    """The stored calls of a relay without the order items a package packed later holds now."""
    calls = []
    for stored in stored_calls:
        call = OmnitronCall.from_json(stored)
        kept = tuple(items.followed(call.order_item_ids))
        if not kept:
            continue
        if kept != call.order_item_ids and "orderitem_set" in call.body:
            entries = [entry for entry in call.body["orderitem_set"] if entry["id"] in kept]
            call = OmnitronCall(call.method, call.path, {**call.body, "orderitem_set": entries}, kept)
        calls.append(call)
    return calls
