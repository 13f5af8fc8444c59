"""A pipeline for the operator-command tests: three carriers (two integrated stand-ins, one
without integration), raw commands published with pika, and what the database, the
carriers, Omnitron and the shipper's dead-letter queue saw."""

from __future__ import annotations

import json
import uuid

import psycopg
from psycopg.rows import dict_row

from services.standins import error_reply
from services.standins.sandbox_carrier import SandboxCarrier
from shared import naming

import harness
from events import (
    package_cancelled,
    package_packed,
    package_shipped,
    shipment_info_updated,
    shipment_status_set,
    to_bytes,
)
from harness import CARRIER_PASSWORD, wait_until

ROUTING_KEYS = {
    "PackagePacked": "package.packed",
    "PackageShipped": "package.shipped",
    "PackageCancelled": "package.cancelled",
    "ShipmentInfoUpdated": "package.shipment_info_updated",
    "ShipmentStatusSet": "package.shipment_status_set",
}
# The carrier's answers to queries, by the order number's prefix (the rest follow the default fates).
SCRIPTS = {"HOLD": ["SHIPPING"], "FAIL": ["DELIVERY_FAILED"], "ATT": ["SHIPPING", "ATTEMPTED_DELIVERY"]}
MANUAL = "courier"


def script_of(order_number: str) -> list[str]:
    for prefix, script in SCRIPTS.items():
        if prefix in order_number:
            return list(script)
    return ["SHIPPING"]


class RefusingCarrier(SandboxCarrier):
    """A carrier that serves no address: every registration is a 400."""

    def _register(self, raw: bytes):
        return error_reply(400, "address_not_serviceable", "this carrier serves no such address")


# The command tests' names for the operator commands' bodies (tests/events.py).
cancelled, info_updated, status_set = package_cancelled, shipment_info_updated, shipment_status_set


def shipped(package_id: str, **fields) -> dict:
    event = package_shipped(package_id)
    event["data"].update(fields)
    return event


class World:
    def __init__(self, pipeline, other: SandboxCarrier, refusing: SandboxCarrier, **sandbox_settings):
        self.pipeline, self.other, self.refusing = pipeline, other, refusing
        self.sandbox = pipeline.carrier
        self.omnitron = pipeline.omnitron
        for carrier in (self.sandbox, other):
            carrier.fate = script_of
        common = {
            "username": "user",
            "password": CARRIER_PASSWORD,
            "api_version": "1",
            "poll_interval_s": 0.3,
            "max_requests_per_s": 500,
        }
        harness.write_carriers_file(
            pipeline.tmp_path / "carriers.toml",
            {
                "sandbox": {"url": self.sandbox.url, **common, **sandbox_settings},
                "other": {"url": other.url, **common},
                "refusing": {"url": refusing.url, **common},
                MANUAL: {"integration": "none"},
            },
        )
        self.items: dict[str, list[int]] = {}
        self._next_item = 70_000

    def start(self) -> "World":
        """The four services; the shipper and the publisher with four handler threads, as compose runs them."""
        for service in ("packer", "tracker"):
            self.pipeline.start(service)
        for service in ("shipper", "omnitron-publisher"):
            self.pipeline.start(service, 1, "--concurrency", "4")
        return self

    # ---- publishing ----
    def publish(self, event: dict) -> dict:
        self.pipeline.publisher.publish(
            ROUTING_KEYS[event["type"]], to_bytes(event), message_id=event["id"], event_type=event["type"]
        )
        return event

    def pack(self, package_id: str, carrier: str = "sandbox", order_number: str | None = None) -> dict:
        items = [self._next_item, self._next_item + 1]
        self._next_item += 2
        self.items[package_id] = items
        return self.publish(package_packed(package_id, order_number or f"ORD-{package_id}", items, carrier=carrier))

    # ---- looking ----
    def query(self, sql: str, *params) -> list[dict]:
        with psycopg.connect(self.pipeline.database_url, row_factory=dict_row) as connection:
            return connection.execute(sql, params).fetchall()

    def shipment(self, package_id: str) -> dict | None:
        rows = self.query("SELECT * FROM shipments WHERE package_id = %s", package_id)
        return rows[0] if rows else None

    def history(self, package_id: str) -> list[str]:
        return [
            r["status"]
            for r in self.query(
                "SELECT c.status FROM shipment_status_changes c JOIN shipments s ON s.id = c.shipment_id "
                "WHERE s.package_id = %s ORDER BY c.sequence",
                package_id,
            )
        ]

    def changes(self, package_id: str) -> list[dict]:
        return [
            json.loads(r["data"])
            for r in self.query(
                "SELECT c.data FROM shipment_status_changes c JOIN shipments s ON s.id = c.shipment_id "
                "WHERE s.package_id = %s ORDER BY c.sequence",
                package_id,
            )
        ]

    def wait_status(self, package_id: str, status: str, timeout: float = 30) -> dict:
        return wait_until(
            lambda: (s := self.shipment(package_id)) is not None and s["status"] == status and s,
            timeout,
            message=f"{package_id} to be {status}",
        )

    def wait_history(self, package_id: str, history: list[str], timeout: float = 30) -> None:
        wait_until(
            lambda: self.history(package_id) == history, timeout, message=f"{package_id}'s history to be {history}"
        )

    def carrier_requests(self, carrier: SandboxCarrier, package_id: str) -> list[tuple[str, str, int]]:
        shipment = self.shipment(package_id)
        if shipment is None:
            return []
        with carrier._lock:
            records = list(carrier.requests)
        return [
            (r.method, r.path.split("/shipments", 1)[-1].replace(shipment["id"], "{id}"), r.status)
            for r in records
            if r.shipment_id == shipment["id"]
        ]

    def omnitron_calls(self, package_id: str) -> list[dict]:
        items = set(self.items[package_id])
        with self.omnitron._lock:
            calls = list(self.omnitron.calls)
        found = []
        for call in calls:
            body = call["body"]
            if "orderitem_set" in body:
                if {e["id"] for e in body["orderitem_set"]} & items:
                    found.append({"bulk": body["orderitem_set"][0]})
            elif int(call["path"].rstrip("/").rsplit("/", 1)[-1]) == min(items):
                found.append({"extra": body["extra_field"]["shipment"]})
        return found

    def wait_omnitron(self, package_id: str, predicate, timeout: float = 30) -> list[dict]:
        return wait_until(
            lambda: predicate(calls := self.omnitron_calls(package_id)) and calls,
            timeout,
            message=f"Omnitron calls of {package_id}",
        )

    def dead_letters(self, service: str = "shipper") -> list[dict]:
        """Every dead letter of the service (taken off its queue): type, package id, reason."""
        letters = []
        for properties, body in self.pipeline.publisher.get_all(naming.dead_letter_queue(service)):
            event = json.loads(body)
            letters.append(
                {
                    "type": event.get("type"),
                    "package_id": (event.get("data") or {}).get("package_id"),
                    "id": event.get("id"),
                    "reason": (properties.headers or {}).get(naming.HEADER_ERROR_MESSAGE),
                }
            )
        return letters

    def wait_dead_letters(self, count: int, service: str = "shipper", timeout: float = 30) -> list[dict]:
        letters: list[dict] = []

        def enough():
            letters.extend(self.dead_letters(service))
            return len(letters) >= count

        wait_until(enough, timeout, message=f"{count} dead letters in {service}")
        return letters


def new_id() -> str:
    return str(uuid.uuid4())
