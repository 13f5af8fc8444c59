"""The packer service: consumes ``package.packed``, in batches."""

from __future__ import annotations

from functools import partial

from services.packer.handlers import open_shipment
from services.runtime.spec import Parts, Runtime, ServiceSpec
from shared.broker import Subscription

NAME = "packer"


def build(runtime: Runtime) -> Parts:
    return Parts(handlers={"PackagePacked": partial(open_shipment, carriers=runtime.carriers)})


# Batched: its handler touches nothing but the database.  The shipper calls the carrier
# between its two transactions and the Omnitron publisher calls Omnitron inside its own:
# batched, a crash would repeat every call of the batch instead of one, and the batch's
# row locks would be held across those calls.
SERVICE = ServiceSpec(NAME, build, subscription=Subscription(NAME, ("package.packed",)), batched=True)
