"""CONTRACT.md §5: Omnitron's bulk update names the carrier's Omnitron shipping company code,
as the carriers file gives it (``omnitron_shipping_company``), else the carrier's own code."""

from __future__ import annotations

from pathlib import Path

from events import package_packed, package_shipped, to_bytes
from harness import wait_until


def test_the_bulk_update_names_the_shipping_company_code_the_carriers_file_gives(pipeline):
    carriers_file = Path(pipeline.env["OMS_CARRIERS_FILE"])
    carriers_file.write_text(carriers_file.read_text() + 'omnitron_shipping_company = "sandbox-cargo"\n')
    pipeline.carrier.fate = lambda order_number: ["SHIPPING", "DELIVERED"]
    pipeline.start_all_services()
    packed, shipped = package_packed("PKG-COMPANY", "ORD-COMPANY", [4242]), package_shipped("PKG-COMPANY")
    for routing_key, event in (("package.packed", packed), ("package.shipped", shipped)):
        pipeline.publisher.publish(routing_key, to_bytes(event), message_id=event["id"], event_type=event["type"])

    wait_until(
        lambda: ("bulk", "550") in pipeline.omnitron.calls_for_item(4242), 60, message="the item relayed as delivered"
    )
    entries = [
        entry
        for call in pipeline.omnitron.calls
        if call["path"].endswith("bulk_status_update/")
        for entry in call["body"]["orderitem_set"]
        if entry["id"] == 4242
    ]
    assert entries and {entry["shipping_company"] for entry in entries} == {"sandbox-cargo"}
