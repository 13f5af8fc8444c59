"""The tracker: claims due shipments, asks their carriers, records what moved forward.

How it scales (any number of trackers, on any number of machines):

- **Work sharing** – shipments are claimed in batches with leases (``queue.py``): FOR
  UPDATE SKIP LOCKED on PostgreSQL, so replicas never wait on each other and never hold
  one shipment together; a killed tracker's claims come due again when the lease ends.
  A request is only started while the lease has time left for it to finish
  (``lanes.py``), so no shipment ever has two queries in flight.
- **Concurrency** – carrier I/O runs on one asyncio loop per tracker, hundreds of
  requests in flight, bounded per carrier; each carrier has its own lane, so a slow one
  does not slow the others. The database work runs on threads beside the loop.
- **Rate limits** – every request takes a slot from the carrier's pacing row in the
  database (``pacing.py``, a GCRA shared by all replicas); ``Retry-After`` and repeated
  failures pause the carrier for every replica; a daily budget is spread over the day.
- **Adaptive intervals** – ``schedule.py``: sooner near delivery, later when nothing
  happens, never after a final status, and a ``stale`` mark after the maximum age.
- **History** – an answer that moves a shipment forward is followed by
  ``GET /shipments/{id}/history`` (one more slot) before it is recorded, and the
  carrier's events are kept with the status change.
- **Batched writes** – answers are recorded many per transaction (``recording.py``),
  with a lease check per row.

``tracker_batch`` is how many shipments one tracker holds per carrier at once (claimed,
not yet recorded); with 1, it claims, records, claims, records, one at a time.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from datetime import timedelta
from typing import Callable

from sqlalchemy import Engine

from services.carriers.directory import CarrierDirectory
from services.domain.repository import PackageRepository
from services.domain.uow import UnitOfWork
from services.tracker import metrics
from services.tracker.lanes import CarrierCalls, CarrierLane
from services.tracker.pacing import CarrierPacing, Reservation
from services.tracker.queue import TrackerQueue
from services.tracker.recording import Job, database_away, record, record_each
from services.tracker.schedule import database_retry_s
from shared.db import database_now
from shared.http import DEFAULT_MAX_RETRY_AFTER_S
from shared.logging import get_logger

log = get_logger(service="tracker")

BACKLOG_EVERY_S = 15.0
#: After a claim that found fewer due shipments than there was room for, the next claim
#: waits this long: a trickle of newly due shipments is claimed in batches, not one
#: transaction per shipment, for at most this much delay.
DRAINED_PAUSE_S = 0.1


class Tracker:
    def __init__(
        self,
        *,
        uow: Callable[[], UnitOfWork],
        engine: Engine,
        carriers: CarrierDirectory,
        stop: threading.Event,
        batch: int = 1000,
        lease_s: float = 60,
        idle_s: float = 1.0,
        concurrency: int = 256,
        claim_ahead_s: float = 1.0,
        slot_tolerance_s: float = 0.02,
        write_batch: int = 500,
        flush_s: float = 0.05,
        handover_horizon_s: float = 86400,
        max_pause_s: float = DEFAULT_MAX_RETRY_AFTER_S,
    ):
        self._uow = uow
        # Pacing and gauges need no outbox or inbox: plain transactions, not units of work.
        self._engine = engine
        self._carriers = carriers
        self._stop = stop
        self._batch = batch
        self._lease_s = lease_s
        self._idle_s = idle_s
        self._concurrency = concurrency
        self._claim_ahead_s = claim_ahead_s
        self.slot_tolerance_s = slot_tolerance_s
        self._write_batch = write_batch
        self._flush_s = flush_s
        self._handover_horizon_s = handover_horizon_s
        self.max_pause_s = max_pause_s
        self._handovers_reported: tuple[int, list[str]] = (0, [])
        self._owner = f"{socket.gethostname()[:64]}:{os.getpid()}"

    # ---- entry points -----------------------------------------------------------------

    def run(self) -> None:
        log.info("tracker started", batch=self._batch, lease_s=self._lease_s, concurrency=self._concurrency)
        asyncio.run(self._serve(single_round=False))
        log.info("tracker stopped")

    def poll_once(self) -> int:
        """One claim round, every claimed shipment asked and recorded; how many were claimed."""
        return asyncio.run(self._serve(single_round=True))

    # ---- what lanes call ----------------------------------------------------------------

    async def reserve(self, config, wanted: int) -> tuple[Reservation, float]:
        def reserve() -> tuple[Reservation, float]:
            with self._engine.begin() as connection:
                reservation = CarrierPacing(connection, self.max_pause_s).reserve(config, wanted, self._claim_ahead_s)
            return reservation, time.monotonic()  # after the commit: slots can only come out later

        return await asyncio.to_thread(reserve)

    async def pause(self, carrier: str, seconds: float) -> None:
        def pause() -> None:
            with self._engine.begin() as connection:
                CarrierPacing(connection, self.max_pause_s).pause(carrier, seconds)

        try:
            await asyncio.to_thread(pause)
        except Exception as exc:  # the local pause holds anyway
            log.warning("could not share a carrier pause", carrier=carrier, error=str(exc))

    def deliver(self, job: Job) -> None:
        if not self._results:
            self._first_result_at = self._loop.time()
        self._results.append(job)
        self._results_ready.set()

    def spawn(self, coroutine) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def crashed(self, error: BaseException) -> bool:
        """In a single round (tests, tools) an unexpected error ends the round and is raised."""
        if not self._single_round:
            return False
        self._crash = self._crash or error
        self.stopping.set()
        self._room.set()
        return True

    # ---- the loop -----------------------------------------------------------------------

    async def _serve(self, single_round: bool) -> int:
        self._loop = asyncio.get_running_loop()
        self._single_round = single_round
        self.stopping = asyncio.Event()
        self._results: list[Job] = []
        self._write_failures, self._write_retry_at = 0, 0.0
        self._results_ready = asyncio.Event()
        self._room = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._crash: BaseException | None = None
        self._lanes = {
            code: CarrierLane(self, config, self._calls(code), self._concurrency)
            for code, config in self._carriers.configs.items()
        }
        senders = [self._loop.create_task(lane.run()) for lane in self._lanes.values()]
        writer = self._loop.create_task(self._write_loop())
        for task in (*senders, writer):
            task.add_done_callback(self._part_ended)
        helpers = (
            []
            if single_round
            else [self._loop.create_task(self._watch_stop()), self._loop.create_task(self._backlog_loop())]
        )
        claimed = 0
        try:
            if single_round:
                claimed = await self._claim_round()
                while self._in_hand() and not self.stopping.is_set():
                    await self._wait(self._room, None)
            else:
                await self._claim_loop()
        finally:
            self.stopping.set()
            for lane in self._lanes.values():
                lane.changed.set()
            await asyncio.gather(*senders, return_exceptions=True)
            while self._tasks:  # requests in flight finish (their timeouts bound this)
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            self._results_ready.set()
            await writer
            for task in helpers:
                task.cancel()
            for lane in self._lanes.values():
                await lane.calls.aclose()
        if self._crash is not None:
            raise self._crash
        return claimed

    def _part_ended(self, task: asyncio.Task) -> None:
        """A lane or the writer that dies would leave shipments unpolled or unrecorded while
        the claims go on: the tracker stops instead, the process exits with the error (its
        supervisor starts it again), and the leases it held run out."""
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        log.error(
            "tracker part crashed, stopping the tracker",
            error=str(error),
            error_class=type(error).__name__,
            exc_info=error,
        )
        self._crash = self._crash or error
        self.stopping.set()
        self._room.set()

    def _calls(self, code: str) -> CarrierCalls:
        return self._carriers.open_async(code, max_connections=self._concurrency)

    def _in_hand(self) -> int:
        return sum(lane.in_hand for lane in self._lanes.values())

    async def _claim_loop(self) -> None:
        while not self.stopping.is_set():
            wanted = {
                code: n
                for code, lane in self._lanes.items()
                if (n := lane.claimable(self._batch, self._claim_ahead_s)) > 0
            }
            if not wanted:
                await self._wait(self._room, self._idle_s)
                continue
            try:
                claimed = await self._claim(wanted)
            except Exception as exc:  # database away: wait; claims expire by themselves
                log.warning("tracker claim failed", error=str(exc), error_class=type(exc).__name__)
                claimed = 0
            if not claimed:
                await self._wait(self.stopping, self._idle_s)
            elif claimed < sum(wanted.values()):
                await self._wait(self.stopping, min(self._idle_s, DRAINED_PAUSE_S))

    async def _claim_round(self) -> int:
        return await self._claim({code: self._batch for code in self._lanes})

    async def _claim(self, wanted: dict[str, int]) -> int:
        def claim():
            # Who holds a lease is readable in the row (host:pid:claim), for operators and tests.
            token = f"{self._owner}:{uuid.uuid4().hex}"
            started = time.monotonic()  # before the lease starts: the local deadline errs early
            with self._uow() as uow:
                queue = uow.repository(TrackerQueue)
                now = queue.now()
                lease_until = now + timedelta(seconds=self._lease_s)
                claims = [c for code, n in wanted.items() for c in queue.claim(code, token, now, lease_until, n)]
                uow.commit()
            return claims, started + self._lease_s

        claims, deadline = await asyncio.to_thread(claim)
        for claim in claims:
            self._lanes[claim.carrier].add(Job(claim, deadline))
        return len(claims)

    async def _write_loop(self) -> None:
        while True:
            stopping = self.stopping.is_set() and not self._tasks
            if self._results and (stopping or self._flush_due()):
                await self._flush()
                continue
            if stopping and not any(lane.in_flight for lane in self._lanes.values()):
                if not self._results:
                    return
                continue
            await self._wait(self._results_ready, self._flush_s)

    def _flush_due(self) -> bool:
        if self._loop.time() < self._write_retry_at:
            return False
        return (
            len(self._results) >= self._write_batch
            or len(self._results) >= self._in_hand()
            or self._loop.time() - self._first_result_at >= self._flush_s
        )

    async def _flush(self) -> None:
        jobs, self._results = self._results[: self._write_batch * 2], self._results[self._write_batch * 2 :]
        try:
            await asyncio.to_thread(record, self._uow, self._carriers.configs, jobs)
            self._write_failures, done = 0, jobs
        except Exception as exc:
            if database_away(exc):
                done = self._keep_for_retry(jobs, exc)
            else:  # refused for what one of them held: the others must not wait for it
                unwritten = await asyncio.to_thread(record_each, self._uow, self._carriers.configs, jobs)
                kept_out = {id(job) for job in unwritten}
                done = [job for job in jobs if id(job) not in kept_out]
                if unwritten:
                    done += self._keep_for_retry(unwritten, exc)
        for job in done:
            self._lanes[job.claim.carrier].in_hand -= 1
        if self._results:
            self._first_result_at = self._loop.time()
        self._room.set()

    def _keep_for_retry(self, jobs: list[Job], error: Exception) -> list[Job]:
        """The database refused the answers: those whose lease lasts are written again shortly
        (asking the carrier again would spend its rate), the rest are given up: their leases
        run out and they come due again, so nothing is lost. Returns the given-up ones."""
        self._write_failures += 1
        retry_in_s = database_retry_s(self._write_failures)
        if self.stopping.is_set():
            kept: list[Job] = []
        else:
            kept = [job for job in jobs if job.deadline - time.monotonic() > retry_in_s]
        log.warning(
            "tracker could not record answers",
            error=str(error),
            error_class=type(error).__name__,
            answers=len(jobs),
            kept_for_retry=len(kept),
            retry_in_s=retry_in_s,
        )
        self._results = kept + self._results
        self._write_retry_at = self._loop.time() + retry_in_s
        kept_ids = {id(job) for job in kept}
        return [job for job in jobs if id(job) not in kept_ids]

    async def _watch_stop(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(0.05)
        self.stopping.set()
        self._room.set()

    async def _backlog_loop(self) -> None:
        while True:
            try:

                def count():
                    with self._engine.connect() as connection:
                        return TrackerQueue(connection).due_backlog(database_now(connection))

                backlog = await asyncio.to_thread(count)
                for code in self._lanes:
                    metrics.DUE_BACKLOG.labels(code).set(backlog.get(code, 0))
                await asyncio.to_thread(self.report_waiting_handovers)
            except Exception as exc:
                log.debug("due backlog not counted", error=str(exc))
            await asyncio.sleep(BACKLOG_EVERY_S)

    def report_waiting_handovers(self) -> None:
        """Hand-overs older than the horizon whose package was never packed: a gauge, and a
        warning whenever what is waiting changes (not every round)."""
        with self._engine.connect() as connection:
            seen_before = database_now(connection) - timedelta(seconds=self._handover_horizon_s)
            waiting = PackageRepository(connection).waiting_for_packing(seen_before)
        metrics.HANDOVERS_WAITING.set(waiting[0])
        if waiting[0] and waiting != self._handovers_reported:
            log.warning(
                "hand-overs waiting for their PackagePacked past the horizon",
                count=waiting[0],
                oldest_package_ids=waiting[1],
                horizon_s=self._handover_horizon_s,
            )
        self._handovers_reported = waiting

    async def _wait(self, event: asyncio.Event, timeout: float | None) -> None:
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        if event is not self.stopping:
            event.clear()
