"""A carrier that speaks the Shipment Flows protocol over real HTTP, for the demo, docs and tests.

Shipments move through a scripted *fate*: each query answers the next carrier status
of the script. Faults and latency come from :class:`StandInServer`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable, Mapping

from services.standins import Reply, StandInServer, error_reply, now_iso

# ---- the carrier ------------------------------------------------------------------------

FATES: dict[str, list[str]] = {
    "delivered": ["SHIPPING", "DELIVERED"],
    "delivery_failed": ["SHIPPING", "DELIVERY_FAILED"],
    "picked_up": ["SHIPPING", "READY_FOR_PICKUP", "DELIVERED"],
    # A stale SHIPPING after the attempt: the services must not move the shipment back.
    "attempted_then_delivered": ["SHIPPING", "ATTEMPTED_DELIVERY", "SHIPPING", "DELIVERED"],
}

_DESCRIPTIONS = {
    "CREATED": "Shipment registered",
    "SHIPPING": "In transit",
    "READY_FOR_PICKUP": "Waiting at the pickup point",
    "ATTEMPTED_DELIVERY": "Recipient not at home, will try again",
    "DELIVERED": "Delivered",
    "DELIVERY_FAILED": "Could not be delivered, returning to sender",
    "DELETED": "Shipment deleted",
}


def default_fate(order_number: str) -> list[str]:
    """One of :data:`FATES`, always the same for an order number (a hash, not ``hash()``)."""
    names = sorted(FATES)
    return list(FATES[names[hashlib.sha256(order_number.encode()).digest()[0] % len(names)]])


@dataclass
class _Shipment:
    shipment_id: str
    order_number: str
    city: str
    tracking_number: str
    script: list[str]
    queries: int = 0
    deleted: bool = False
    history: list[tuple[str, str]] = field(default_factory=list)  # (status, date) as answered

    @property
    def status(self) -> str:
        return self.history[-1][0]

    def answer(self, status: str) -> None:
        if not self.history or status != self.status:  # a repeated answer is no new event
            self.history.append((status, now_iso()))


class SandboxCarrier(StandInServer):
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = "user",
        password: str = "secret",
        fate: Callable[[str], list[str]] | None = None,
    ):
        super().__init__(host, port)
        self._expected_auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.fate = fate or default_fate
        self.rejecting = True  # orders "REJECT-…" get a 400; set False: "the carrier got fixed"
        self.registrations: dict[str, dict] = {}  # shipmentId -> the body as received
        self._shipments: dict[str, _Shipment] = {}

    def __repr__(self) -> str:
        return f"SandboxCarrier(url={self.url if self._server else None!r})"

    def subject_of(self, method: str, path: str, body: bytes) -> str | None:
        parts = path.strip("/").split("/")
        if parts[0] != "shipments":
            return None
        if len(parts) > 1:
            return parts[1]
        try:
            shipment_id = json.loads(body).get("shipmentId")
        except (ValueError, AttributeError):
            return None
        return shipment_id if isinstance(shipment_id, str) else None

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        parts = path.strip("/").split("/")
        if method == "GET" and len(parts) == 2 and parts[0] == "track":  # public: no credentials
            with self._lock:
                found = [s for s in self._shipments.values() if s.tracking_number == parts[1]]
                if found:
                    return 200, self._snapshot(found[0]), {}
            return error_reply(404, "not_found", f"unknown tracking number {parts[1]}")
        if headers.get("authorization") != self._expected_auth:
            return error_reply(
                401, "unauthorized", "bad or missing credentials", {"WWW-Authenticate": 'Basic realm="sandbox"'}
            )
        missing = [h for h in ("x-akinon-request-id", "x-akinon-api-version") if not headers.get(h)]
        if missing:
            return error_reply(400, "missing_header", f"required header(s) missing: {', '.join(missing)}")
        if parts == ["shipments"] and method == "POST":
            return self._register(body)
        if parts[0] != "shipments" or len(parts) not in (2, 3):
            return error_reply(404, "not_found", f"no route for {method} {path}")
        with self._lock:
            shipment = self._shipments.get(parts[1])
            if shipment is None:
                return error_reply(404, "not_found", f"unknown shipment {parts[1]}")
            if len(parts) == 3 and parts[2] == "history" and method == "GET":
                events = [
                    {"status": s, "date": d, "description": _DESCRIPTIONS.get(s, s), "location": shipment.city}
                    for s, d in shipment.history
                ]
                return 200, {"shipmentId": shipment.shipment_id, "events": events}, {}
            if len(parts) == 2 and method == "GET":
                if not shipment.deleted and shipment.script:
                    shipment.answer(shipment.script[min(shipment.queries, len(shipment.script) - 1)])
                    shipment.queries += 1
                return 200, self._snapshot(shipment), {}
            if len(parts) == 2 and method == "DELETE":
                shipment.deleted = True
                shipment.answer("DELETED")
                return 204, None, {}
        return error_reply(405, "method_not_allowed", f"{method} not allowed on {path}")

    def _register(self, raw: bytes) -> Reply:
        try:
            body = json.loads(raw)
        except ValueError:
            return error_reply(400, "invalid_json", "body is not JSON")
        if not isinstance(body, dict):
            return error_reply(400, "invalid_request", "body is not a JSON object")
        problems = [key for key in ("shipmentId", "orderNumber") if not isinstance(body.get(key), str) or not body[key]]
        if not isinstance(body.get("destination"), dict):
            problems.append("destination")
        if not isinstance(body.get("products"), list) or not body["products"]:
            problems.append("products")
        if problems:
            return error_reply(400, "invalid_request", f"missing or invalid: {', '.join(problems)}")
        with self._lock:
            existing = self._shipments.get(body["shipmentId"])
            if existing is not None:  # idempotent: the same shipment, the same tracking number
                return 200, self._registration(existing), {}
            if self.rejecting and body["orderNumber"].startswith("REJECT-"):
                return error_reply(
                    400, "address_not_serviceable", f"order {body['orderNumber']}: destination district is not served"
                )
            city = (body["destination"].get("city") or {}).get("name") or ""
            number = int.from_bytes(hashlib.sha256(body["shipmentId"].encode()).digest()[:8], "big") % 10**9
            shipment = _Shipment(
                body["shipmentId"], body["orderNumber"], city, f"SBX{number:09d}", list(self.fate(body["orderNumber"]))
            )
            shipment.answer("CREATED")
            self._shipments[shipment.shipment_id] = shipment
            self.registrations[shipment.shipment_id] = body
            return 201, self._registration(shipment), {}

    def _registration(self, shipment: _Shipment) -> dict:
        return {
            "shipmentId": shipment.shipment_id,
            "trackingNumber": shipment.tracking_number,
            "trackingUrl": f"{self.url}/track/{shipment.tracking_number}",
            "labelUrl": f"{self.url}/labels/{shipment.shipment_id}.pdf",
            "status": shipment.status,
        }

    def _snapshot(self, shipment: _Shipment) -> dict:
        status, date = shipment.history[-1]
        return {
            "shipmentId": shipment.shipment_id,
            "trackingNumber": shipment.tracking_number,
            "status": status,
            "statusDate": date,
            "description": _DESCRIPTIONS.get(status, status),
        }
