"""Writing a batch of carrier answers: one transaction, a lease check per row.

Most answers change nothing but the schedule; they end their leases in one statement
(``TrackerQueue.finish``). An answer that moves a shipment forward goes through the
aggregate, so its history row and outbox event commit with the new status. A row whose
lease was taken over by another tracker (ours ran out) is left alone: the newer claim
decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from contracts import can_transition
from services.carriers.shipment_flows import (
    STATUS_TABLE,
    CarrierConfig,
    CarrierEvent,
    CarrierProtocolError,
    CarrierSnapshot,
    map_status,
)
from services.domain.uow import UnitOfWork
from services.tracker import metrics
from services.tracker.queue import Claim, PollResult, TrackerQueue
from services.tracker.schedule import is_too_old, poll_interval_s, priority_of
from shared.logging import get_logger

log = get_logger(service="tracker")


@dataclass
class Job:
    """One claimed shipment on its way through a tracker: slot, query, maybe history, record."""

    claim: Claim
    deadline: float  # the lease's end on this process's monotonic clock (a little early, never late)
    history: bool = False  # its next request is the history
    answer: CarrierSnapshot | Exception | None = None
    events: list[CarrierEvent] | None = None
    released: bool = False  # handed back unpolled
    release_in_s: float = 0.0  # ... and due again this much later

    @property
    def has_news(self) -> bool:
        """The carrier's answer moves the shipment forward (only then is its history fetched)."""
        if not isinstance(self.answer, CarrierSnapshot):
            return False
        status = STATUS_TABLE.get(str(self.answer.carrier_status).strip().upper())
        return status is not None and can_transition(self.claim.status, status)


def record(uow_factory: Callable[[], UnitOfWork], configs: dict[str, CarrierConfig], jobs: list[Job]) -> int:
    """Records the jobs' outcomes; how many still held their lease."""
    with uow_factory() as uow:
        queue = uow.repository(TrackerQueue)
        now = queue.now()
        held = queue.lock_held({job.claim.shipment_id: job.claim.token for job in jobs})
        outcomes = [
            _outcome(uow, configs[job.claim.carrier], job, now) for job in jobs if job.claim.shipment_id in held
        ]
        queue.finish(outcomes, now)
        uow.commit()
    if len(held) < len(jobs):
        log.info("late answers dropped: another tracker took the shipments over", dropped=len(jobs) - len(held))
    return len(held)


def database_away(error: BaseException) -> bool:
    """The write failed because of the database or the connection, not because of what it held."""
    return isinstance(error, (OperationalError, InterfaceError, DisconnectionError)) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )


def record_each(uow_factory: Callable[[], UnitOfWork], configs: dict[str, CarrierConfig], jobs: list[Job]) -> list[Job]:
    """After the database refused a whole batch for what it held: each job in its own transaction.

    The carrier's answers are checked before they get here (``shipment_flows``); this is
    the second line, so that one answer the database still refuses never holds back the
    others of its batch. Such a job is recorded as a failed poll instead (its lease ends
    and it comes due again later). Returns the jobs not written because the database
    went away meanwhile.
    """
    unwritten = []
    for job in jobs:
        try:
            record(uow_factory, configs, [job])
            continue
        except Exception as exc:
            if database_away(exc):
                unwritten.append(job)
                continue
            log.error(
                "carrier answer refused by the database: recorded as a failed poll",
                shipment_id=job.claim.shipment_id,
                carrier=job.claim.carrier,
                error=str(exc)[:500],
                error_class=type(exc).__name__,
            )
            job.answer, job.events = CarrierProtocolError(f"refused by the database ({type(exc).__name__})"), None
        try:
            record(uow_factory, configs, [job])
        except Exception:
            unwritten.append(job)
    return unwritten


def _outcome(uow: UnitOfWork, config: CarrierConfig, job: Job, now: datetime) -> PollResult:
    claim = job.claim
    if job.released:
        return PollResult(
            claim.shipment_id,
            now + timedelta(seconds=job.release_in_s),
            polled=False,
            poll_priority=priority_of(claim.status),
            history_wanted=claim.history_wanted,
        )
    if isinstance(job.answer, Exception):
        quiet_s = (now - claim.news_at).total_seconds()
        wait = max(poll_interval_s(config, claim.status, quiet_s), getattr(job.answer, "retry_after", None) or 0)
        metrics.POLLS.labels(claim.carrier, "failed").inc()
        log.warning(
            "carrier query failed",
            shipment_id=claim.shipment_id,
            carrier=claim.carrier,
            error=str(job.answer),
            error_class=type(job.answer).__name__,
            retry_in_s=wait,
        )
        return PollResult(
            claim.shipment_id,
            now + timedelta(seconds=wait),
            poll_priority=priority_of(claim.status),
            history_wanted=claim.history_wanted,
        )
    status, news_at = claim.status, claim.news_at
    new_status = map_status(job.answer.carrier_status)
    if job.has_news:
        shipment = uow.shipments.get(claim.shipment_id)
        if shipment.move_to(new_status, now, job.answer.carrier_status):
            uow.save(shipment)
            status, news_at = shipment.status, now
            log.info(
                "status changed",
                shipment_id=shipment.id,
                status=status.value,
                carrier_status=job.answer.carrier_status,
                sequence=shipment.sequence,
            )
    metrics.POLLS.labels(claim.carrier, "changed" if news_at == now else "unchanged").inc()
    if job.events is not None:
        uow.repository(TrackerQueue).record_carrier_events(claim.shipment_id, job.events, now)
    wanted = job.events is None and (news_at == now or claim.history_wanted)
    outcome = PollResult(claim.shipment_id, None, poll_priority=priority_of(status), history_wanted=wanted)
    if status.is_final:
        return outcome
    if is_too_old(config, claim.created_at, now):
        metrics.STALE.labels(claim.carrier).inc()
        log.warning(
            "shipment stale: tracking given up",
            shipment_id=claim.shipment_id,
            carrier=claim.carrier,
            status=status.value,
            created_at=claim.created_at.isoformat(),
            max_tracking_age_s=config.max_tracking_age_s,
        )
        return PollResult(
            claim.shipment_id, None, poll_priority=outcome.poll_priority, history_wanted=wanted, stale_at=now
        )
    interval = poll_interval_s(config, status, (now - news_at).total_seconds())
    return PollResult(
        claim.shipment_id, now + timedelta(seconds=interval), poll_priority=outcome.poll_priority, history_wanted=wanted
    )
