"""Every service of the process, in one static list."""

from __future__ import annotations

from services.omnitron_publisher.service import SERVICE as OMNITRON_PUBLISHER
from services.packer.service import SERVICE as PACKER
from services.runtime.spec import ServiceSpec
from services.shipper.service import SERVICE as SHIPPER
from services.tracker.service import SERVICE as TRACKER

SERVICES: dict[str, ServiceSpec] = {spec.name: spec for spec in (PACKER, SHIPPER, TRACKER, OMNITRON_PUBLISHER)}
SERVICE_NAMES = tuple(SERVICES)
#: The services that consume a work queue (hence have a dead-letter queue).
CONSUMERS = tuple(name for name, spec in SERVICES.items() if spec.subscription is not None)
