"""The shipper's batches: hand-overs in one transaction, registrations each on its own.

The worker hands over the deliveries that have arrived (up to ``OMS_BATCH_SIZE``); each is
parsed once. A PackageShipped touches nothing but the database, as the packer's events
do, so the batch's hand-overs are applied together in one transaction (shared/batch.py:
a SAVEPOINT each, so a poison message rolls back alone, one commit for all), in package
order so that two batches never wait on each other's package rows the other way round.
A registration calls the carrier between its two transactions; it stays one at a time,
each committed before the next call (a crash repeats only the registration in hand).
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

from sqlalchemy import Engine

from services.messagebus import apply, parse_delivery, published_routing_key
from shared.batch import Outcome, run_batch


class ShipperBatch:
    def __init__(self, *, engine: Engine, handlers: dict[str, Callable]):
        self._engine = engine
        self._handlers = handlers

    def __call__(self, _handle, deliveries: Sequence) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(deliveries)
        handovers, registrations = [], []
        for index, delivery in enumerate(deliveries):
            started = time.perf_counter()
            try:
                event = parse_delivery(delivery, self._handlers)
            except Exception as exc:
                outcomes[index] = Outcome(exc, time.perf_counter() - started)
                continue
            routing_key = published_routing_key(delivery)
            (handovers if event.type == "PackageShipped" else registrations).append((index, event, routing_key))
        if handovers:
            handovers.sort(key=lambda pair: pair[1].data.package_id)
            applied = run_batch(self._engine, lambda one: apply(self._handlers[one[1].type], one[1], one[2]),
                                handovers)
            for (index, _, _), outcome in zip(handovers, applied):
                outcomes[index] = outcome
        for index, event, routing_key in registrations:
            started = time.perf_counter()
            try:
                apply(self._handlers[event.type], event, routing_key)
                error = None
            except BaseException as exc:  # a handler's failure is data for the policy
                error = exc
            outcomes[index] = Outcome(error, time.perf_counter() - started)
        return outcomes
