"""``oms-shipments demo``: the whole pipeline in one process, with live progress.

By default on the embedded broker (``memory://``) and a SQLite file, so it needs no
RabbitMQ and no PostgreSQL; ``--amqp-url``/``--database-url`` run the very same code
against real servers.  The sandbox carrier and the Omnitron stand-in are real HTTP
servers on loopback.  The embedded broker has no TTL, dead-lettering or redelivery:
the demo relies on none of them (retries wait in-process there).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from sqlalchemy import func, select

from contracts import CloudEvent, PackageCancelled, PackagePacked, PackageShipped, ShipmentStatusSet, routing_key_for
from services.carriers.directory import CarrierDirectory, Carriers
from services.carriers.shipment_flows import CarrierConfig
from services.domain.tables import omnitron_cursor, shipments
from services.migrations import upgrade
from services.runtime.bootstrap import SERVICE_NAMES, RunningServices, bootstrap, topology
from services.runtime.settings import ServiceSettings
from services.standins.omnitron import OmnitronStandIn
from services.standins.sandbox_carrier import SandboxCarrier
from shared.broker import Publisher, connect
from shared.db import utcnow

FINAL = ("delivered", "delivery_failed", "cancelled")
SOURCE = "/oms-shipments/demo"
#: A courier the demo has no integration for (``integration = "none"``).
MANUAL_CARRIER = "store-courier"


def is_cancelled(n: int) -> bool:
    """Every 7th package is cancelled after its packing (PackageCancelled), never handed over."""
    return n % 7 == 3


def is_manual(n: int) -> bool:
    """Every 7th package goes with a courier without integration: shipped by hand, delivered by a status set."""
    return n % 7 == 5


def demo_events(count: int) -> list[CloudEvent]:
    """PackagePacked and PackageShipped for ``count`` packages; every 10th handed over first;
    cancellations and a manual courier among them (``is_cancelled``, ``is_manual``)."""
    source = SOURCE
    events = []
    for n in range(count):
        package_id = f"DEMO-{n:05d}"
        packed = PackagePacked.model_validate(
            {
                "package_id": package_id,
                "order_number": f"ORD-DEMO-{n:05d}",
                "carrier": MANUAL_CARRIER if is_manual(n) else "sandbox",
                "delivery_type": "CUSTOMER",
                "packed_at": utcnow(),
                "items": [{"order_item_id": 100_000 + n, "sku": f"SKU-{n % 7}", "quantity": 1 + n % 2, "deci": 1.5}],
                "destination": {
                    "name": "Ada",
                    "surname": "Lovelace",
                    "phone": "+905551112233",
                    "country_code": "TR",
                    "city": "Istanbul",
                    "district": "Beyoglu",
                    "zipcode": "34433",
                    "address_line": "Istiklal Cd. 1",
                },
                "payment": {"amount": "120.50", "currency": "TRY"} if n % 4 == 0 else None,
            }
        )
        shipped = PackageShipped(
            package_id=package_id,
            shipped_at=utcnow(),
            **({"tracking_number": f"SC-{n:05d}", "shipping_company": "Kadikoy Courier"} if is_manual(n) else {}),
        )
        pair = [
            CloudEvent.new("PackagePacked", source, packed, subject=package_id),
            CloudEvent.new("PackageShipped", source, shipped, subject=package_id),
        ]
        if is_cancelled(n):
            cancelled = PackageCancelled(package_id=package_id, reason="customer cancelled", cancelled_at=utcnow())
            pair[1] = CloudEvent.new("PackageCancelled", source, cancelled, subject=package_id)
        events += reversed(pair) if n % 10 == 0 else pair
    return events


class Demo:
    def __init__(self, packages: int, amqp_url: str, database_url: str | None, console: Console):
        self.packages = packages
        self.console = console
        self.workdir = Path(tempfile.mkdtemp(prefix="oms-demo-"))
        self.database_url = database_url or f"sqlite:///{self.workdir / 'demo.sqlite3'}"
        self.amqp_url = amqp_url
        self.token = uuid.uuid4().hex

    def run(self, timeout_s: float) -> bool:
        carrier_password = uuid.uuid4().hex
        with (
            SandboxCarrier(username="demo", password=carrier_password) as carrier,
            OmnitronStandIn(token=self.token) as omnitron,
        ):
            settings = ServiceSettings(
                amqp_url=self.amqp_url,
                database_url=self.database_url,
                omnitron_url=omnitron.url,
                omnitron_token=self.token,
                tracker_idle_s=0.1,
                retry_delays_s=[0.5, 1, 2],
                log_level="WARNING",
                carriers_file=self.workdir / "unused.toml",
                metrics_port=None,
            )
            carriers = CarrierDirectory(
                Carriers(
                    {
                        "sandbox": CarrierConfig(
                            code="sandbox",
                            url=carrier.url,
                            username="demo",
                            password=carrier_password,
                            poll_interval_s=0.3,
                            max_requests_per_s=500,
                        )
                    },
                    manual=[MANUAL_CARRIER],
                )
            )
            upgrade(self.database_url)
            with connect(self.amqp_url) as connection:
                topology(settings).declare(connection)
            runtime = bootstrap(settings, carriers=carriers)
            running = RunningServices(runtime, list(SERVICE_NAMES)).start()
            try:
                self._publish()
                return self._watch(runtime, carrier, omnitron, timeout_s)
            finally:
                running.stop(timeout_s=30)

    def _publish(self, events: list[CloudEvent] | None = None) -> None:
        with connect(self.amqp_url) as connection:
            publisher = Publisher(connection)
            for event in demo_events(self.packages) if events is None else events:
                publisher.publish(
                    event.to_bytes(),
                    routing_key=routing_key_for(event.type, event.data),
                    message_id=event.id,
                    event_type=event.type,
                )

    def _deliver_by_hand(self, engine, done: set[str]) -> None:
        """The manual courier's parcels, once shipped, are delivered by an employee's ShipmentStatusSet."""
        with engine.connect() as connection:
            shipped = (
                connection.execute(
                    select(shipments.c.package_id).where(
                        shipments.c.carrier == MANUAL_CARRIER, shipments.c.status == "shipped"
                    )
                )
                .scalars()
                .all()
            )
        events = [
            CloudEvent.new(
                "ShipmentStatusSet",
                SOURCE,
                ShipmentStatusSet(
                    package_id=package_id, status="delivered", reason="the courier handed it over", set_at=utcnow()
                ),
                subject=package_id,
            )
            for package_id in shipped
            if package_id not in done
        ]
        if events:
            self._publish(events)
            done.update(event.data.package_id for event in events)

    def _counts(self, engine) -> tuple[Counter, int]:
        with engine.connect() as connection:
            by_status = Counter(
                dict(connection.execute(select(shipments.c.status, func.count()).group_by(shipments.c.status)).all())
            )
            relayed_final = connection.execute(
                select(func.count())
                .select_from(shipments.join(omnitron_cursor, omnitron_cursor.c.shipment_id == shipments.c.id))
                .where(shipments.c.status.in_(FINAL), omnitron_cursor.c.last_sequence == shipments.c.sequence)
            ).scalar_one()
        return by_status, relayed_final

    def _table(self, by_status: Counter, relayed_final: int, carrier, omnitron, elapsed: float) -> Group:
        table = Table(title=f"{self.packages} packages, {elapsed:.1f}s")
        table.add_column("status")
        table.add_column("shipments", justify="right")
        for status in ("pending", "registered", "shipped", "attempted_delivery", "ready_for_pickup", *FINAL):
            table.add_row(status, str(by_status.get(status, 0)))
        calls = Table(show_header=False, box=None)
        calls.add_row("carrier requests", str(len(carrier.requests)))
        calls.add_row("Omnitron calls", str(len(omnitron.calls)))
        calls.add_row("final and relayed to Omnitron", f"{relayed_final}/{self.packages}")
        calls.add_row("cancelled by PackageCancelled", str(sum(1 for n in range(self.packages) if is_cancelled(n))))
        calls.add_row(
            f"with {MANUAL_CARRIER} (no integration)", str(sum(1 for n in range(self.packages) if is_manual(n)))
        )
        return Group(table, calls)

    def _watch(self, runtime, carrier, omnitron, timeout_s: float) -> bool:
        started = time.monotonic()
        delivered_by_hand: set[str] = set()
        with Live(console=self.console, refresh_per_second=4) as live:
            while not runtime.stop.is_set():
                self._deliver_by_hand(runtime.engine, delivered_by_hand)
                by_status, relayed_final = self._counts(runtime.engine)
                elapsed = time.monotonic() - started
                live.update(self._table(by_status, relayed_final, carrier, omnitron, elapsed))
                if relayed_final == self.packages:
                    return True
                if elapsed > timeout_s:
                    return False
                time.sleep(0.25)
        return False  # a service crashed (its traceback is in the log above)
