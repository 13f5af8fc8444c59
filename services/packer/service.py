"""The packer service: consumes ``package.packed``."""
from __future__ import annotations


from services.runtime.bootstrap import Runtime
from services.packer.handlers import open_shipment
from shared.broker import Subscription

NAME = "packer"
SUBSCRIPTION = Subscription(NAME, ("package.packed",))


def handlers(runtime: Runtime) -> dict:
    return {"PackagePacked": lambda event: open_shipment(event, runtime.uow(NAME), runtime.carriers)}
