"""The embedded demo shows operator commands among its packages: cancellations and a courier
without integration, each ending final and relayed to Omnitron."""

from __future__ import annotations

from rich.console import Console

from services.tools.demo import MANUAL_CARRIER, Demo, demo_events, is_cancelled, is_manual


def test_the_demo_events_hold_cancellations_and_a_manual_courier():
    events = demo_events(14)
    types = [event.type for event in events]
    assert types.count("PackageCancelled") == sum(1 for n in range(14) if is_cancelled(n)) == 2
    manual = [e for e in events if e.type == "PackagePacked" and e.data.carrier == MANUAL_CARRIER]
    assert len(manual) == sum(1 for n in range(14) if is_manual(n)) == 2
    handed = [e for e in events if e.type == "PackageShipped" and e.data.package_id == manual[0].data.package_id]
    assert handed[0].data.tracking_number and handed[0].data.shipping_company


def test_the_demo_runs_every_package_to_its_end_cancellations_and_manual_courier_included(tmp_path):
    demo = Demo(14, "memory://", f"sqlite:///{tmp_path / 'demo.sqlite3'}", Console(file=open(tmp_path / "out", "w")))
    assert demo.run(timeout_s=120)
