"""An AsyncAPI 3.0 document of the broker topology, built from the same definitions the
services declare (names from shared/naming.py, bindings from each service's SUBSCRIPTION),
with the events' JSON Schemas as message payloads — so the document cannot drift.
"""

from __future__ import annotations

import json
from pathlib import Path

from contracts import ShipmentStatus
from contracts.schemas import event_schemas, export_json_schemas
from services.runtime.registry import SERVICES
from shared import naming
from shared.broker import CONTENT_TYPE

EXCHANGE_BINDING = {"name": naming.EVENTS_EXCHANGE, "type": "topic", "durable": True, "autoDelete": False, "vhost": "/"}
EVENT_CHANNELS = {
    "PackagePacked": ("packagePacked", "package.packed", "upstream (OMS, Instore app, ERP)"),
    "PackageShipped": ("packageShipped", "package.shipped", "upstream (OMS, Instore app, ERP)"),
    "ShipmentStatusChanged": ("shipmentStatusChanged", "shipment.status_changed.{status}", "the shipment services"),
    "PackageCancelled": ("packageCancelled", "package.cancelled", "upstream, or `oms-shipments cancel`"),
    "ShipmentInfoUpdated": (
        "shipmentInfoUpdated",
        "package.shipment_info_updated",
        "upstream, or `oms-shipments update-info`",
    ),
    "ShipmentStatusSet": (
        "shipmentStatusSet",
        "package.shipment_status_set",
        "upstream, or `oms-shipments set-status`",
    ),
}
# Information changes (ShipmentInfoUpdated) travel as ShipmentStatusChanged under a second address.
INFO_CHANGED_CHANNEL = ("shipmentInfoChanged", "shipment.info_changed.{status}")


def _receives(routing_keys: tuple[str, ...]) -> list[str]:
    """Which event types reach a queue bound with these routing keys."""
    types = []
    for key in routing_keys:
        for event_type, (_, address, _) in EVENT_CHANNELS.items():
            prefix = address.split("{", 1)[0]
            info_prefix = INFO_CHANGED_CHANNEL[1].split("{", 1)[0] if event_type == "ShipmentStatusChanged" else None
            if (
                key == address
                or (prefix.endswith(".") and key.startswith(prefix))
                or (info_prefix and key.startswith(info_prefix))
            ):
                if event_type not in types:
                    types.append(event_type)
    return types


def _queue_channel(name: str, messages: list[str], bindings: list[str], description: str) -> dict:
    channel = {
        "address": name,
        "description": description,
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in messages},
        "bindings": {
            "amqp": {
                "is": "queue",
                "bindingVersion": "0.3.0",
                "queue": {"name": name, "durable": True, "exclusive": False, "autoDelete": False, "vhost": "/"},
            }
        },
    }
    if bindings:
        channel["x-oms-bindings"] = [{"exchange": naming.EVENTS_EXCHANGE, "routingKey": key} for key in bindings]
    return channel


def asyncapi_document(version: str = "0.1.0") -> dict:
    schemas = event_schemas()
    channels: dict = {}
    operations: dict = {}
    for event_type, (channel_id, address, publisher) in EVENT_CHANNELS.items():
        channel = {
            "address": address,
            "description": f"{event_type} events on the {naming.EVENTS_EXCHANGE} topic exchange; published by {publisher}.",
            "messages": {event_type: {"$ref": f"#/components/messages/{event_type}"}},
            "bindings": {"amqp": {"is": "routingKey", "exchange": EXCHANGE_BINDING, "bindingVersion": "0.3.0"}},
        }
        if "{status}" in address:
            channel["parameters"] = {
                "status": {
                    "enum": [s.value for s in ShipmentStatus],
                    "description": "The shipment status the change moved to.",
                }
            }
        channels[channel_id] = channel
        operations[f"publish{event_type}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"{publisher} publish {event_type} (persistent, AMQP message_id = the event id).",
        }
    channel_id, address = INFO_CHANGED_CHANNEL
    channels[channel_id] = {
        "address": address,
        "description": "ShipmentStatusChanged information changes (status = previous_status; ShipmentInfoUpdated) "
        f"on the {naming.EVENTS_EXCHANGE} topic exchange; published by the shipment services.",
        "messages": {"ShipmentStatusChanged": {"$ref": "#/components/messages/ShipmentStatusChanged"}},
        "bindings": {"amqp": {"is": "routingKey", "exchange": EXCHANGE_BINDING, "bindingVersion": "0.3.0"}},
        "parameters": {
            "status": {
                "enum": [s.value for s in ShipmentStatus],
                "description": "The shipment's status, unchanged by the information change.",
            }
        },
    }
    operations["publishShipmentInfoChanged"] = {
        "action": "send",
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "summary": "the shipment services publish ShipmentStatusChanged information changes.",
    }
    for service, spec in SERVICES.items():
        subscription = spec.subscription
        if subscription is None:
            continue
        received = _receives(subscription.routing_keys)
        work, dlq = naming.work_queue(service), naming.dead_letter_queue(service)
        channels[work] = _queue_channel(work, received, list(subscription.routing_keys), f"The {service}'s work queue.")
        channels[dlq] = _queue_channel(
            dlq, received, [], f"The {service}'s dead letters, with x-oms-* failure headers."
        )
        operations[f"{service}.consume"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{work}"},
            "summary": f"The {service} consumes its work queue (ack after commit; retries via delay queues).",
        }
    messages = {}
    for event_type, schema in schemas.items():
        messages[event_type] = {
            "name": event_type,
            "title": event_type,
            "contentType": CONTENT_TYPE,
            "payload": {"schemaFormat": "application/schema+json;version=draft-2020-12", "schema": schema},
            "bindings": {"amqp": {"messageType": event_type, "bindingVersion": "0.3.0"}},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "oms-shipments",
            "version": version,
            "description": "Events the shipment services consume (CloudEvents 1.0 in structured JSON or binary "
            "content mode, ce- headers as AMQP strings) and publish (structured JSON).",
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {"rabbitmq": {"host": "localhost:5672", "protocol": "amqp", "protocolVersion": "0.9.1"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def export_contracts(directory: Path) -> list[Path]:
    written = export_json_schemas(directory / "schemas")
    path = directory / "asyncapi.json"
    path.write_text(json.dumps(asyncapi_document(), indent=2) + "\n")
    return [*written, path]
