"""The events a benchmark sends, as upstream writes them (JSON bytes), and how it sends them."""

from __future__ import annotations

import json
import uuid

import pika

# Each run's packages have order items of their own, so no two runs' Omnitron calls mix.
_ITEM_BASE = {"RAW": 1_000_000, "DRAIN": 2_000_000, "E2E": 3_000_000, "SOAK": 4_000_000}


def item_of(prefix: str, n: int) -> int:
    return _ITEM_BASE[prefix] + n


def package_packed(n: int, prefix: str) -> dict:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/oms/instore/store-42",
        "type": "PackagePacked",
        "time": "2026-11-27T10:00:00Z",
        "subject": f"{prefix}-{n}",
        "datacontenttype": "application/json",
        "data": {
            "package_id": f"{prefix}-{n}",
            "order_number": f"ORD-{prefix}-{n}",
            "carrier": "sandbox",
            "delivery_type": "CUSTOMER",
            "packed_at": "2026-11-27T10:00:00Z",
            "items": [
                {
                    "order_item_id": item_of(prefix, n),
                    "sku": f"SKU-{n % 97}",
                    "barcode": f"869{n:010d}",
                    "name": "Shirt",
                    "quantity": 1 + n % 3,
                    "deci": 1.5,
                }
            ],
            "destination": {
                "name": "Ada",
                "surname": "Lovelace",
                "phone": "+905551112233",
                "country_code": "TR",
                "city": "Istanbul",
                "district": "Beyoglu",
                "township": "",
                "zipcode": "34433",
                "address_line": "Istiklal Cd. 1",
            },
            "delivery_note": "Ring twice",
        },
    }


def package_shipped(n: int, prefix: str) -> dict:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/oms/instore/store-42",
        "type": "PackageShipped",
        "time": "2026-11-27T12:30:00Z",
        "datacontenttype": "application/json",
        "data": {"package_id": f"{prefix}-{n}", "shipped_at": "2026-11-27T12:30:00Z"},
    }


class Upstream:
    """Publishes events to ``oms.events`` like an upstream system: pika, persistent, no confirms."""

    ROUTING = {"PackagePacked": "package.packed", "PackageShipped": "package.shipped"}

    def __init__(self, amqp_url: str):
        self._connection = pika.BlockingConnection(pika.URLParameters(amqp_url + "?heartbeat=0"))
        self._channel = self._connection.channel()

    def publish(self, event: dict) -> None:
        self._channel.basic_publish(
            "oms.events",
            self.ROUTING[event["type"]],
            json.dumps(event).encode(),
            pika.BasicProperties(
                delivery_mode=2, content_type="application/cloudevents+json", message_id=event["id"], type=event["type"]
            ),
        )

    def close(self) -> None:
        self._connection.close()
