"""``oms-shipments cancel``, ``update-info``, ``set-status``, ``label`` and ``stale`` (CONTRACT.md §6).

The three commands publish PackageCancelled, ShipmentInfoUpdated and ShipmentStatusSet
exactly as upstream would: a CloudEvent, validated by the contract's models, published to
``oms.events`` with confirms and the mandatory flag, by the same code as ``publish``
(services/publishing.py). They never write to the database: the shipper applies or
refuses each command, and a refusal is in its dead-letter queue (``dlq show --queue shipper``).
``label`` and ``stale`` only read.
"""

from __future__ import annotations

import json
import socket
from datetime import datetime, timezone

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from contracts.commands import SETTABLE_STATUSES
from contracts.ids import uuid4
from services.tools.cli_text import literal, shown


#: The ``source`` of the commands the command line publishes (with the host, for the audit).
def cli_source() -> str:
    return f"/oms-shipments/cli/{socket.gethostname() or 'localhost'}"


def command_event(event_type: str, data: dict) -> dict:
    return {
        "specversion": "1.0",
        "id": uuid4(),
        "source": cli_source(),
        "type": event_type,
        "time": _now(),
        "subject": data["package_id"],
        "datacontenttype": "application/json",
        "data": data,
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _publish(event: dict) -> None:
    """Validated and published like ``oms-shipments publish`` does; exits 1 on a refusal or a return."""
    from services.tools.cli import _settings, console
    from services.tools.publishing import EventsReturned, publish_lines

    settings = _settings()
    try:
        published, errors = publish_lines(settings.amqp_url.get_secret_value(), [json.dumps(event)])
    except EventsReturned as returned:
        console.print(str(returned), style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    for _, reason in errors:
        console.print(Text.assemble((f"{event['type']} not published: ", "red"), (shown(reason), "red")))
    if errors:
        raise typer.Exit(1)
    console.print(
        Text.assemble(
            (f"published {event['type']} ", "green"),
            literal(event["id"]),
            " for ",
            literal(event["data"]["package_id"]),
            "; the shipper applies it (or dead-letters it with the reason)",
        )
    )


def register_commands(app: typer.Typer) -> None:
    """Adds the commands to the ``oms-shipments`` application (services/cli.py)."""

    @app.command("cancel")
    def cancel(
        package_id: str = typer.Argument(..., help="The package to cancel."),
        reason: str = typer.Option(..., "--reason", help="Why (sent on to Omnitron)."),
    ) -> None:
        """Publish PackageCancelled: cancel a package before it is handed to the carrier."""
        _publish(
            command_event("PackageCancelled", {"package_id": package_id, "reason": reason, "cancelled_at": _now()})
        )

    @app.command("update-info")
    def update_info(
        package_id: str = typer.Argument(..., help="The package whose shipment information changes."),
        carrier: str = typer.Option(None, "--carrier", help="A carrier code of the carriers file."),
        tracking_number: str = typer.Option(None, "--tracking-number", help="Carriers without integration only."),
        tracking_url: str = typer.Option(None, "--tracking-url", help="Carriers without integration only."),
        shipping_company: str = typer.Option(None, "--shipping-company", help="Free text, shown in Omnitron."),
    ) -> None:
        """Publish ShipmentInfoUpdated: another carrier, tracking number, URL or shipping company."""
        fields = {
            "carrier": carrier,
            "tracking_number": tracking_number,
            "tracking_url": tracking_url,
            "shipping_company": shipping_company,
        }
        given = {key: value for key, value in fields.items() if value is not None}
        if not given:
            raise typer.BadParameter(
                "give at least one of --carrier, --tracking-number, --tracking-url, --shipping-company"
            )
        _publish(command_event("ShipmentInfoUpdated", {"package_id": package_id, **given, "updated_at": _now()}))

    @app.command("set-status")
    def set_status(
        package_id: str = typer.Argument(..., help="The package whose shipment status an employee sets."),
        status: str = typer.Argument(..., help=f"One of {', '.join(SETTABLE_STATUSES)}."),
        reason: str = typer.Option(..., "--reason", help="Why (kept with the change, sent on to Omnitron)."),
    ) -> None:
        """Publish ShipmentStatusSet: an employee sets the shipment's status by hand."""
        if status not in SETTABLE_STATUSES:
            raise typer.BadParameter(
                f"{shown(status)!r} is not a status an employee may set; choose one of {', '.join(SETTABLE_STATUSES)}",
                param_hint="STATUS",
            )
        _publish(
            command_event(
                "ShipmentStatusSet", {"package_id": package_id, "status": status, "reason": reason, "set_at": _now()}
            )
        )

    @app.command("label")
    def label(package_id: str = typer.Argument(..., help="The package.")) -> None:
        """Print the shipment's label URL (from the carrier's registration)."""
        from services.tools.cli import _settings, console

        row = _shipment_row(_settings(), package_id)
        if row is None:
            console.print(Text.assemble(("no shipment for package ", "red"), (shown(repr(package_id)), "red")))
            raise typer.Exit(1)
        if not row.label_url:
            console.print(
                Text.assemble(
                    ("no label for package ", "red"),
                    (shown(package_id), "red"),
                    f" (shipment {shown(row.status)}, carrier {shown(row.carrier)}: "
                    "a label comes with the carrier's registration)",
                )
            )
            raise typer.Exit(1)
        Console(soft_wrap=True).print(literal(row.label_url))

    @app.command("stale")
    def stale(as_json: bool = typer.Option(False, "--json", help="One JSON object per shipment.")) -> None:
        """Shipments the tracker gave up on: resolve each with ``set-status``."""
        from services.tools.cli import _settings

        rows = stale_shipments(_settings())
        if as_json:
            for row in rows:
                print(json.dumps(row, default=str))
            return
        out = Console()
        if not rows:
            out.print("no stale shipments")
            return
        table = Table("package", "carrier", "status", "last carrier status", "since", "stale since")
        for row in rows:
            table.add_row(
                literal(row["package_id"]),
                literal(row["carrier"]),
                literal(row["status"]),
                literal(row["carrier_status"]),
                literal(row["since"]),
                literal(row["stale_at"]),
            )
        out.print(table)
        out.print(f"{len(rows)} stale; resolve each with: oms-shipments set-status PACKAGE_ID STATUS --reason TEXT")


def _shipment_row(settings, package_id: str):
    from sqlalchemy import select

    from services.domain.tables import shipments
    from shared.db import make_engine

    engine = make_engine(settings.database_url.get_secret_value())
    try:
        with engine.connect() as connection:
            return connection.execute(select(shipments).where(shipments.c.package_id == package_id)).first()
    finally:
        engine.dispose()


def stale_shipments(settings) -> list[dict]:
    """Non-final shipments the tracker gave up on (``stale_at``), oldest first: package, carrier,
    status, the carrier's last status, since when it has not changed, when tracking stopped."""
    from sqlalchemy import select

    from contracts import FINAL_STATUSES
    from services.domain.tables import shipments
    from shared.db import make_engine

    engine = make_engine(settings.database_url.get_secret_value())
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(
                    shipments.c.package_id,
                    shipments.c.carrier,
                    shipments.c.status,
                    shipments.c.carrier_status,
                    shipments.c.updated_at,
                    shipments.c.stale_at,
                )
                .where(shipments.c.stale_at.is_not(None), shipments.c.status.not_in([s.value for s in FINAL_STATUSES]))
                .order_by(shipments.c.stale_at)
            ).all()
    finally:
        engine.dispose()
    return [
        {
            "package_id": r.package_id,
            "carrier": r.carrier,
            "status": r.status,
            "carrier_status": r.carrier_status,
            "since": r.updated_at.isoformat(timespec="seconds"),
            "stale_at": r.stale_at.isoformat(timespec="seconds"),
        }
        for r in rows
    ]
