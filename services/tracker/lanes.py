"""One carrier's lane in a tracker: shipments waiting for a send slot, requests in flight.

Each carrier has its own lane, its own connection pool and its own bound on requests in
flight, so a slow or failing carrier fills only its own lane: the others go on at their
pace. A lane reserves rate-limit slots (``pacing.py``) only for requests it can start
at once, so a slot is used within milliseconds of its time; a request whose slot has
passed by more than the tolerance (an overloaded event loop) takes a new slot instead
of going out late, which keeps the carrier's one-second windows within
``rate * (1 + tolerance) + 1`` whatever happens on our side.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from services.carriers.shipment_flows import CarrierConfig, CarrierProtocolError
from services.tracker import metrics
from services.tracker.pacing import Reservation
from services.tracker.recording import Job
from services.tracker.schedule import backoff_s, database_retry_s
from shared.http import PermanentHTTPError, TransientHTTPError
from shared.logging import get_logger

log = get_logger(service="tracker")

#: A request needs at least this much lease left to be sent (it could not finish otherwise).
MIN_REQUEST_S = 0.5
#: Taken off the lease for safety: the lease is measured on two clocks.
LEASE_MARGIN_S = 1.0
#: Transient failures in a row before the carrier is paused with backoff.
FAILURES_BEFORE_BACKOFF = 3
#: Over this window a lane measures the slots it is granted, to claim no more than it can send.
GRANT_WINDOW_S = 2.0
#: Above this many slots per tolerance window (a limit in the tens of thousands per second),
#: slot times are not enforced: such a limit never binds one tracker.
STRICT_SLOTS_WITHIN_TOLERANCE = 100
#: A pause longer than this hands the waiting shipments back instead of holding their leases.
HOLD_THROUGH_PAUSE_S = 5.0


class CarrierCalls(Protocol):
    """What a lane asks its carrier (``AsyncShipmentFlowsClient``): one shipment's status and
    its history, each bounded by ``timeout_s`` (what is left of the lease)."""

    async def query(self, shipment_id: str, timeout_s: float | None): ...
    async def history(self, shipment_id: str, timeout_s: float | None): ...
    async def aclose(self) -> None: ...


class LaneHost(Protocol):
    stopping: asyncio.Event
    slot_tolerance_s: float
    max_pause_s: float  # no pause of a carrier is longer (OMS_MAX_RETRY_AFTER_S)

    async def reserve(self, config: CarrierConfig, wanted: int) -> tuple[Reservation, float]: ...
    async def pause(self, carrier: str, seconds: float) -> None: ...
    def deliver(self, job: Job) -> None: ...
    def spawn(self, coroutine) -> None: ...
    def crashed(self, error: BaseException) -> bool: ...


class CarrierLane:
    def __init__(self, host: LaneHost, config: CarrierConfig, calls: CarrierCalls, max_in_flight: int):
        self.host, self.config, self.calls = host, config, calls
        self.max_in_flight = max_in_flight
        self.waiting: deque[Job] = deque()
        self.in_hand = 0  # claimed and not yet recorded
        self.in_flight = 0  # requests holding a slot: sent, or about to be
        # Twice as many slots as connections: the next reservation is made while the
        # previous requests are still out, so the lane never idles waiting on the database.
        self._connections = asyncio.Semaphore(max_in_flight)
        self.paused_until = 0.0  # on the loop's clock
        self.closed_until = 0.0  # the day's budget is spent until then
        self.budget_left: int | None = None
        self.failures = 0
        self._reserve_failures = 0
        self._grants: deque[tuple[float, int]] = deque()  # (when, slots) of the last few seconds
        self._granting_since: float | None = None
        self.changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def claimable(self, batch: int, claim_ahead_s: float) -> int:
        """How many more shipments to claim now: no more than the pacing lets out soon."""
        now = self._loop.time()
        if now < self.closed_until or now < self.paused_until:
            return 0
        ahead = max(1, math.ceil(self._slots_per_s(now) * claim_ahead_s))
        room = min(batch - self.in_hand, ahead - len(self.waiting))
        if self.budget_left is not None:
            room = min(room, self.budget_left - len(self.waiting))
        return room if room >= max(1, min(batch, ahead) // 4) else 0

    def _slots_per_s(self, now: float) -> float:
        """The slots this tracker actually gets: other replicas share the carrier's rate."""
        while self._grants and now - self._grants[0][0] > GRANT_WINDOW_S:
            self._grants.popleft()
        if self._granting_since is None or now - self._granting_since < GRANT_WINDOW_S or not self._grants:
            return self.config.paced_rate_per_s
        return max(1.0, sum(n for _, n in self._grants) / GRANT_WINDOW_S)

    def add(self, job: Job) -> None:
        self.in_hand += 1
        if job.claim.taken_over:  # a dead tracker's: ahead of the lane's own look-ahead
            self.waiting.appendleft(job)
        else:
            self.waiting.append(job)
        self.changed.set()

    async def run(self) -> None:
        while not self.host.stopping.is_set():
            now = self._loop.time()
            if self.waiting and now < self.paused_until:
                if self.paused_until - now > HOLD_THROUGH_PAUSE_S:
                    self._hand_back(self.paused_until - now)
                await self._wait(self.paused_until - now)
                continue
            free = 2 * self.max_in_flight - self.in_flight
            if not self.waiting or free <= 0:
                await self._wait(None)
                continue
            wanted = min(len(self.waiting), free)
            try:
                reservation, reserved_at = await self.host.reserve(self.config, wanted)
            except SQLAlchemyError as exc:  # the database away: the shipments wait here, under their leases
                await self._reserve_failed(exc)
                continue
            self._reserve_failures = 0
            self.budget_left = reservation.budget_left
            if self._granting_since is None:
                self._granting_since = reserved_at
            self._grants.append((reserved_at, len(reservation.offsets_s)))
            if not reservation.offsets_s:
                self._no_slots(reservation, reserved_at)
                await self._wait(min(0.05, 1 / self.config.paced_rate_per_s))
                continue
            # A request sent late crowds the carrier's next one-second window whenever the
            # carrier is near its limit, and this lane cannot see what the other replicas
            # send: so a late slot is always given up for a new one, unless the limit is so
            # high that slots are closer together than the clock's jitter anyway.
            strict = self.config.paced_rate_per_s * self.host.slot_tolerance_s < STRICT_SLOTS_WITHIN_TOLERANCE
            for offset in reservation.offsets_s:
                self.in_flight += 1
                self.host.spawn(self._send(self.waiting.popleft(), reserved_at + offset, strict))
        self._hand_back(0.0)

    async def _reserve_failed(self, error: Exception) -> None:
        self._reserve_failures += 1
        retry_in_s = database_retry_s(self._reserve_failures)
        log.warning(
            "carrier slots not reserved",
            carrier=self.config.code,
            error=str(error),
            error_class=type(error).__name__,
            waiting=len(self.waiting),
            retry_in_s=retry_in_s,
        )
        await asyncio.sleep(retry_in_s)  # not _wait: answers coming back must not hurry the retry

    def _no_slots(self, reservation: Reservation, reserved_at: float) -> None:
        if reservation.budget_left == 0:
            log.warning(
                "carrier's daily request budget spent",
                carrier=self.config.code,
                max_requests_per_day=self.config.max_requests_per_day,
            )
            self.closed_until = reserved_at + reservation.seconds_to_next_day
            self._hand_back(reservation.seconds_to_next_day)
        elif reservation.paused_for_s > 0:  # another replica paused the carrier
            self.paused_until = max(self.paused_until, reserved_at + reservation.paused_for_s)

    def _hand_back(self, due_in_s: float) -> None:
        while self.waiting:
            job = self.waiting.popleft()
            job.released, job.release_in_s = True, due_in_s
            self.host.deliver(job)

    async def _wait(self, timeout: float | None) -> None:
        try:
            await asyncio.wait_for(self.changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        self.changed.clear()

    async def _send(self, job: Job, slot: float, strict: bool) -> None:
        try:
            delay = slot - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            async with self._connections:
                await self._send_now(job, slot, strict)
        finally:
            self.in_flight -= 1
            self.changed.set()

    async def _send_now(self, job: Job, slot: float, strict: bool) -> None:
        now = self._loop.time()
        late = strict and now - slot > self.host.slot_tolerance_s
        if late or now < self.paused_until:
            if late:
                metrics.LATE_SLOTS.labels(self.config.code).inc()
            self.waiting.appendleft(job)  # a new slot, never a late one
            return
        timeout = job.deadline - now - LEASE_MARGIN_S
        if timeout < MIN_REQUEST_S:  # it could outlive the lease: another tracker may take over
            job.released = True
            self.host.deliver(job)
            return
        await (self._history(job, timeout) if job.history else self._query(job, timeout))

    async def _query(self, job: Job, timeout: float | None) -> None:
        try:
            job.answer = await self.calls.query(job.claim.shipment_id, timeout)
            self.failures = 0
        except (TransientHTTPError, PermanentHTTPError) as exc:
            job.answer = exc
            if isinstance(exc, TransientHTTPError):
                self._failed(exc)
        except Exception as exc:
            if self.host.crashed(exc):
                return
            log.exception("carrier query crashed", shipment_id=job.claim.shipment_id, carrier=self.config.code)
            job.answer = exc
        if job.has_news or (job.claim.history_wanted and not isinstance(job.answer, Exception)):
            job.history = True
            self.waiting.appendleft(job)
            return
        self.host.deliver(job)

    async def _history(self, job: Job, timeout: float | None) -> None:
        try:
            job.events = await self.calls.history(job.claim.shipment_id, timeout)
            metrics.HISTORY_FETCHES.labels(self.config.code, "ok").inc()
        except Exception as exc:  # the status is recorded anyway; the history is fetched next time
            metrics.HISTORY_FETCHES.labels(self.config.code, "failed").inc()
            log.warning(
                "carrier history failed",
                shipment_id=job.claim.shipment_id,
                carrier=self.config.code,
                error=str(exc),
                error_class=type(exc).__name__,
            )
            if isinstance(exc, TransientHTTPError):
                self._failed(exc)
        self.host.deliver(job)

    def _failed(self, error: TransientHTTPError) -> None:
        if isinstance(error, CarrierProtocolError):
            # One shipment's unusable answer says nothing about the carrier's load: pausing
            # the carrier for it would stall every other shipment's answers.
            return
        now = self._loop.time()
        if error.retry_after:
            pause, reason = min(error.retry_after, self.host.max_pause_s), "retry_after"
        else:
            self.failures += 1
            if self.failures < FAILURES_BEFORE_BACKOFF or now < self.paused_until:
                return
            pause, reason = backoff_s(self.failures - FAILURES_BEFORE_BACKOFF + 1), "backoff"
        if now + pause <= self.paused_until:
            return
        self.paused_until = now + pause
        metrics.CARRIER_PAUSES.labels(self.config.code, reason).inc()
        log.warning("carrier paused", carrier=self.config.code, reason=reason, pause_s=pause, failures=self.failures)
        self.host.spawn(self.host.pause(self.config.code, pause))
