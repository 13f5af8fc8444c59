"""The tracker: claims due shipments, asks their carriers, records what moved forward.

Claims are leases (see TrackerQueue), so any number of trackers share the work and
a dead tracker's shipments come due again when its lease runs out.  Carrier queries
run on a thread pool so one slow carrier does not hold up the others.
"""
from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Callable

from services.carriers.directory import CarrierDirectory
from services.carriers.shipment_flows import CarrierSnapshot, map_status
from services.domain.uow import UnitOfWork
from shared.db import utcnow
from shared.http import PermanentHTTPError, TransientHTTPError
from shared.logging import get_logger

log = get_logger(service="tracker")


class Tracker:
    def __init__(
        self,
        *,
        uow: Callable[[], UnitOfWork],
        carriers: CarrierDirectory,
        stop: threading.Event,
        batch: int = 200,
        lease_s: float = 60,
        idle_s: float = 1.0,
        concurrency: int = 16,
    ):
        self._uow = uow
        self._carriers = carriers
        self._stop = stop
        self._batch = batch
        self._lease = timedelta(seconds=lease_s)
        self._idle_s = idle_s
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tracker-query")

    def run(self) -> None:
        log.info("tracker started", batch=self._batch, lease_s=self._lease.total_seconds())
        while not self._stop.is_set():
            try:
                polled = self.poll_once()
            except Exception as exc:  # database away: wait, claims expire by themselves
                log.warning("tracker round failed", error=str(exc), error_class=type(exc).__name__)
                polled = 0
            if polled < self._batch:
                self._stop.wait(self._idle_s)
        self._pool.shutdown(wait=True, cancel_futures=True)
        log.info("tracker stopped")

    def poll_once(self) -> int:
        token = f"{uuid.uuid4()}"
        now = utcnow()
        with self._uow() as uow:
            claimed = uow.tracker_queue.claim_due(token, now, now + self._lease, self._batch)
            uow.commit()
        if not claimed:
            return 0
        answers = self._pool.map(self._ask_carrier, claimed)
        for (shipment_id, carrier), answer in zip(claimed, answers):
            if self._stop.is_set():
                break  # unrecorded claims come due again when their lease ends
            self._record(shipment_id, carrier, token, answer)
        return len(claimed)

    def _ask_carrier(self, claim: tuple[str, str]) -> CarrierSnapshot | Exception:
        shipment_id, carrier = claim
        try:
            return self._carriers.client(carrier).query(shipment_id)
        except (TransientHTTPError, PermanentHTTPError, KeyError) as exc:
            return exc

    def _record(self, shipment_id: str, carrier: str, token: str, answer: CarrierSnapshot | Exception) -> None:
        config = self._carriers.configs.get(carrier)
        interval = timedelta(seconds=config.poll_interval_s if config else 3600)
        now = utcnow()
        with self._uow() as uow:
            if not uow.tracker_queue.holds_claim(shipment_id, token):
                return  # our lease ran out and another tracker took over
            if isinstance(answer, Exception):
                retry_after = getattr(answer, "retry_after", None) or 0
                wait = max(interval, timedelta(seconds=retry_after))
                log.warning("carrier query failed", shipment_id=shipment_id, carrier=carrier,
                            error=str(answer), error_class=type(answer).__name__, retry_in_s=wait.total_seconds())
                uow.tracker_queue.finish_poll(shipment_id, now, now + wait)
                uow.commit()
                return
            shipment = uow.shipments.get(shipment_id)
            status = map_status(answer.carrier_status)
            if status is not None and shipment.move_to(status, now, answer.carrier_status):
                uow.save(shipment)
                log.info("status changed", shipment_id=shipment_id, status=status.value,
                         carrier_status=answer.carrier_status, sequence=shipment.sequence)
            next_poll = None if shipment.status.is_final else now + interval
            uow.tracker_queue.finish_poll(shipment_id, now, next_poll)
            uow.commit()
