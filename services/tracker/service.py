"""The tracker service: polls carriers; consumes no queue."""

from __future__ import annotations

from services.runtime.spec import Parts, Runtime, ServiceSpec
from services.tracker.poller import Tracker

NAME = "tracker"


def build(runtime: Runtime) -> Parts:
    settings = runtime.settings
    return Parts(
        components=[
            Tracker(
                uow=runtime.units_of_work(NAME),
                carriers=runtime.carriers,
                stop=runtime.stop,
                engine=runtime.engine,
                batch=settings.tracker_batch,
                lease_s=settings.tracker_lease_s,
                idle_s=settings.tracker_idle_s,
                concurrency=settings.tracker_concurrency,
                claim_ahead_s=settings.tracker_claim_ahead_s,
                slot_tolerance_s=settings.tracker_slot_tolerance_s,
                handover_horizon_s=settings.handover_horizon_s,
                max_pause_s=settings.max_retry_after_s,
            )
        ]
    )


SERVICE = ServiceSpec(NAME, build)
