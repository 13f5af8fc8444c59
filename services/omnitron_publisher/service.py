"""The Omnitron publisher: relays every shipment status change to Omnitron."""

from __future__ import annotations

from functools import partial

from contracts import CloudEvent
from services.omnitron_publisher.batch import BatchRelay
from services.omnitron_publisher.handlers import relay_to_omnitron
from services.omnitron_publisher.omnitron import OmnitronClient
from services.omnitron_publisher.settle import UnsettledCalls
from services.runtime.pipeline import Pipeline
from services.runtime.spec import Parts, Runtime, ServiceSpec
from shared.broker import Subscription

NAME = "omnitron-publisher"


def omnitron_client(runtime: Runtime) -> OmnitronClient:
    settings = runtime.settings
    if not settings.omnitron_url or not settings.omnitron_token:
        raise SystemExit("the omnitron-publisher needs OMS_OMNITRON_URL and OMS_OMNITRON_TOKEN")
    # A few quick tries in hand; longer outages wait in the delay queues, not in a
    # handler that holds the shipment's relay lock.
    return OmnitronClient(
        settings.omnitron_url,
        settings.omnitron_token.get_secret_value(),
        timeout_s=settings.omnitron_timeout_s,
        retry_attempts=3,
        max_wait_s=5,
        max_retry_after_s=settings.max_retry_after_s,
    )


def build(runtime: Runtime) -> Parts:
    settings = runtime.settings
    omnitron, settle_s = omnitron_client(runtime), settings.omnitron_settle_s
    companies = runtime.carriers.omnitron_companies  # each carrier's Omnitron shipping company code

    def batches(pipeline: Pipeline) -> BatchRelay | None:
        """Changes relayed in batches only when one bulk call may carry several packages
        (OMS_OMNITRON_BULK_PACKAGES > 1, services/omnitron_publisher/batch.py). Otherwise each
        change alone, its shipment's changes on one handler thread (``shipment_of``), as
        ``--concurrency`` spreads the shipments over the threads."""
        if settings.omnitron_bulk_packages <= 1:
            return None
        return BatchRelay(
            engine=runtime.engine,
            consumer=NAME,
            pipeline=pipeline,
            omnitron=omnitron,
            settle_s=settle_s,
            bulk_packages=settings.omnitron_bulk_packages,
            companies=companies,
        )

    return Parts(
        handlers={
            "ShipmentStatusChanged": partial(
                relay_to_omnitron, omnitron=omnitron, settle_s=settle_s, companies=companies
            )
        },
        components=[UnsettledCalls(engine=runtime.engine, omnitron=omnitron, stop=runtime.stop, settle_s=settle_s)],
        batches=batches,
    )


def shipment_of(event: CloudEvent) -> str:
    """A shipment's changes go to one handler thread, so they reach Omnitron in the order they came."""
    return event.data.shipment_id


SERVICE = ServiceSpec(
    NAME,
    build,
    subscription=Subscription(NAME, ("shipment.status_changed.*", "shipment.info_changed.*")),
    ordering_key=shipment_of,
)
