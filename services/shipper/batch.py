"""The shipper's batches: runs of hand-overs in one transaction, everything else on its own.

The worker hands over the deliveries that have arrived (up to ``OMS_BATCH_SIZE``), each
decoded once on arrival. A PackageShipped touches nothing but the database, as the packer's
events do, so each run of consecutive hand-overs is applied in one transaction
(shared/batch.py: a SAVEPOINT each, so a poison message rolls back alone, one commit for
all), in package order so that two batches never wait on each other's package rows the
other way round. A registration calls the carrier between its two transactions, and an
operator command may too; each stays one at a time, committed before the next call (a
crash repeats only the call in hand), in its place among the hand-overs: the batch keeps
the order the events arrived in.
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
        handovers: list = []  # the run of hand-overs since the last other event
        for index, delivery in enumerate(deliveries):
            try:
                event = self._pipeline.event_of(delivery)  # decoded once, on arrival
            except Exception as exc:
                outcomes[index] = Handled(exc, 0.0)
                continue
            routing_key = delivery.published_routing_key
            if event.type == "PackageShipped":
                handovers.append((index, event, routing_key))
                continue
            # A registration or an operator command: after the hand-overs that came before
            # it, before those after it, so the batch keeps the order the events arrived in.
            self._hand_over(handovers, outcomes)
            started = time.perf_counter()
            try:
                self._pipeline.apply(event, routing_key)
                error = None
            except BaseException as exc:  # a handler's failure is data for the policy
                error = exc
            outcomes[index] = Handled(error, time.perf_counter() - started)
        self._hand_over(handovers, outcomes)
        return outcomes

    def _hand_over(self, handovers: list, outcomes: list) -> None:
        """A run of hand-overs in one transaction, in package order (row locks always taken the same way)."""
        if not handovers:
            return
        handovers.sort(key=lambda one: one[1].data.package_id)
        applied = run_batch(self._engine, lambda one: self._pipeline.apply(one[1], one[2]), handovers)
        for (index, _, _), outcome in zip(handovers, applied):
            outcomes[index] = outcome
        handovers.clear()
