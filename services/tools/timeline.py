"""``oms-shipments status``: a package's shipment and its full timeline, as a table.

Package events, the carrier's own tracking events (kept by the tracker from
``GET /shipments/{id}/history``), status changes, Omnitron relays and the tracker's
``stale`` mark, in time order.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import select

from services.domain.tables import carrier_events, omnitron_relays, packages, shipments, status_changes
from services.tools.cli_text import literal, shown
from shared.db import make_engine
from shared.settings import Settings


def timeline_rows(connection, package_id: str) -> tuple[dict | None, list[tuple]]:
    """(shipment summary, [(at, kind, what, detail)]) in time order."""
    package = connection.execute(select(packages).where(packages.c.package_id == package_id)).first()
    if package is None:
        return None, []
    shipment = connection.execute(select(shipments).where(shipments.c.package_id == package_id)).first()
    rows: list[tuple] = []
    if package.packed_at:
        rows.append((package.packed_at, "package", "packed", f"event {package.packed_event_id}"))
    if package.shipped_at:
        rows.append((package.shipped_at, "package", "handed over", f"event {package.shipped_event_id}"))
    if shipment is not None:
        for change in connection.execute(
            select(status_changes)
            .where(status_changes.c.shipment_id == shipment.id)
            .order_by(status_changes.c.sequence)
        ):
            rows.append(
                (
                    change.changed_at,
                    "status",
                    change.status,
                    f"#{change.sequence} from {change.previous_status or '-'}"
                    + (f" (carrier {change.carrier_status})" if change.carrier_status else ""),
                )
            )
        for event in connection.execute(select(carrier_events).where(carrier_events.c.shipment_id == shipment.id)):
            where = f" at {event.location}" if event.location else ""
            rows.append(
                (
                    event.occurred_at or event.recorded_at,
                    "carrier",
                    event.carrier_status,
                    f"{event.description or ''}{where}".strip(),
                )
            )
        if shipment.stale_at is not None:
            rows.append(
                (
                    shipment.stale_at,
                    "tracker",
                    "stale",
                    "tracking given up: no final status within the carrier's max_tracking_age_s",
                )
            )
        for relay in connection.execute(
            select(omnitron_relays).where(omnitron_relays.c.shipment_id == shipment.id).order_by(omnitron_relays.c.id)
        ):
            rows.append(
                (
                    relay.relayed_at,
                    "omnitron",
                    relay.status,
                    f"#{relay.sequence} {relay.outcome}, {relay.calls} call(s)",
                )
            )
    rows.sort(key=lambda row: row[0])
    summary = (
        dict(shipment._mapping) if shipment is not None else {"package_id": package_id, "status": "(no shipment yet)"}
    )
    return summary, rows


def render_status(settings: Settings, package_id: str, console: Console) -> bool:
    engine = make_engine(settings.database_url.get_secret_value())
    try:
        with engine.connect() as connection:
            summary, rows = timeline_rows(connection, package_id)
    finally:
        engine.dispose()
    # Everything below came from messages, carriers or the command line: printed literally.
    if summary is None:
        console.print(Text.assemble(("no package ", "red"), (shown(repr(package_id)), "red")))
        return False
    console.print(
        Text.assemble(
            (shown(package_id), "bold"),
            "  shipment ",
            shown(summary.get("id")),
            "  carrier ",
            shown(summary.get("carrier")),
            "  tracking ",
            shown(summary.get("tracking_number")),
            "  status ",
            (shown(summary["status"]), "bold"),
        )
    )
    if summary.get("label_url") or summary.get("shipping_company"):  # operator commands (CONTRACT.md §4)
        console.print(
            Text.assemble(
                "  label ",
                shown(summary.get("label_url")),
                "  shipping company ",
                shown(summary.get("shipping_company")),
            )
        )
    table = Table("at", "kind", "what", "detail")
    for at, kind, what, detail in rows:
        table.add_row(literal(at.isoformat(timespec="seconds")), literal(kind), literal(what), literal(detail))
    console.print(table)
    return True
