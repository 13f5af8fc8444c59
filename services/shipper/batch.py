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
from typing import Sequence

from sqlalchemy import Engine

from services.runtime.pipeline import Pipeline
from shared.batch import Handled, run_batch


class ShipperBatch:
    def __init__(self, *, engine: Engine, pipeline: Pipeline):
        self._engine = engine
        self._pipeline = pipeline

    def __call__(self, _handle, deliveries: Sequence) -> list[Handled]:
        outcomes: list[Handled | None] = [None] * len(deliveries)
        handovers, others = [], []
        for index, delivery in enumerate(deliveries):
            try:
                event = self._pipeline.event_of(delivery)  # decoded once, on arrival
            except Exception as exc:
                outcomes[index] = Handled(exc, 0.0)
                continue
            routing_key = delivery.published_routing_key
            (handovers if event.type == "PackageShipped" else others).append((index, event, routing_key))
        if handovers:
            handovers.sort(key=lambda one: one[1].data.package_id)
            applied = run_batch(self._engine, lambda one: self._pipeline.apply(one[1], one[2]), handovers)
            for (index, _, _), outcome in zip(handovers, applied):
                outcomes[index] = outcome
        for index, event, routing_key in others:  # registrations and commands: one at a time, in order
            started = time.perf_counter()
            try:
                self._pipeline.apply(event, routing_key)
                error = None
            except BaseException as exc:  # a handler's failure is data for the policy
                error = exc
            outcomes[index] = Handled(error, time.perf_counter() - started)
        return outcomes
