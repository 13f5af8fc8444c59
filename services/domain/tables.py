"""The shipment schema (one schema for all services; migrations in services/migrations)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

from shared.db import UtcDateTime, metadata
from shared.inbox import inbox_table  # noqa: F401  (part of the schema)
from shared.outbox import outbox_table  # noqa: F401  (part of the schema)

# A package row exists as soon as any event names it: PackageShipped may come first.
packages = Table(
    "packages",
    metadata,
    Column("package_id", String(255), primary_key=True),
    Column("order_number", String(255)),
    Column("carrier", String(64)),
    Column("delivery_type", String(32)),
    Column("packed_at", UtcDateTime),
    Column("packed", JSON, doc="the PackagePacked data as received"),
    Column("packed_event_id", String(255)),
    Column("shipped_at", UtcDateTime),
    Column("shipped_event_id", String(255)),
    Column(
        "handover",
        JSON,
        doc="a hand-over's tracking_number, tracking_url, shipping_company (carriers without integration)",
    ),
    Column("first_seen_at", UtcDateTime, nullable=False),
    # Hand-overs still waiting for their PackagePacked (the tracker reports old ones):
    # few rows, whatever the size of the table.
    Index(
        "ix_packages_waiting_for_packing",
        "first_seen_at",
        postgresql_where=text("packed IS NULL"),
        sqlite_where=text("packed IS NULL"),
    ),
)

package_items = Table(
    "package_items",
    metadata,
    Column("package_id", String(255), ForeignKey("packages.package_id"), nullable=False),
    Column("order_item_id", BigInteger, nullable=False),
    Column("sku", String(255), nullable=False),
    Column("barcode", String(255)),
    Column("name", Text),
    Column("quantity", BigInteger, nullable=False),
    Column("deci", Float),
    PrimaryKeyConstraint("package_id", "order_item_id"),
    # Which packages hold an order item: it follows, in Omnitron, the package packed last.
    Index("ix_package_items_order_item_id", "order_item_id"),
)

shipments = Table(
    "shipments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("package_id", String(255), ForeignKey("packages.package_id"), nullable=False, unique=True),
    Column("order_number", String(255), nullable=False),
    Column("carrier", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("carrier_status", String(64)),
    Column("tracking_number", String(255)),
    Column("tracking_url", Text),
    Column("label_url", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("next_poll_at", UtcDateTime),
    Column("lease_owner", String(128)),
    Column("lease_until", UtcDateTime),
    Column("polls", Integer, nullable=False, server_default=text("0")),
    Column("last_polled_at", UtcDateTime),
    # Tracker columns from migration 0002 (see services/tracker/queue.py).
    Column(
        "poll_priority",
        SmallInteger,
        nullable=False,
        server_default=text("1"),
        doc="0: delivery is near (polled first when the carrier's budget is short); 1: in transit",
    ),
    Column(
        "history_wanted",
        Boolean,
        nullable=False,
        server_default=false(),
        doc="a change was recorded without the carrier's history: fetch it on the next poll",
    ),
    Column("stale_at", UtcDateTime, doc="when the tracker gave up on the shipment (too old, no final status)"),
    # Operator commands (migration 0007, services/commands/).
    Column("shipping_company", String(255), doc="hand-given (PackageShipped, ShipmentInfoUpdated)"),
    Column("registered_carriers", Text, doc="the carriers the shipment was registered at (JSON list)"),
    Column("info_updated_at", UtcDateTime, doc="updated_at of the newest ShipmentInfoUpdated applied"),
    # The claim query: carrier and priority by equality, then a range on next_poll_at,
    # so it stays an index range scan however many shipments are tracked.
    Index(
        "ix_shipments_due_by_carrier",
        "carrier",
        "poll_priority",
        "next_poll_at",
        postgresql_where=text("next_poll_at IS NOT NULL"),
        sqlite_where=text("next_poll_at IS NOT NULL"),
    ),
)

# One row per carrier, shared by every tracker replica: the carrier's rate limit as a
# GCRA "theoretical arrival time", a pause (Retry-After, backoff) and the day's budget.
carrier_pacing = Table(
    "carrier_pacing",
    metadata,
    Column("carrier", String(64), primary_key=True),
    Column("tat", UtcDateTime, nullable=False, doc="the earliest time the next request may be sent"),
    Column("paused_until", UtcDateTime),
    Column("day", Date, doc="the UTC day day_count counts"),
    Column("day_count", Integer, nullable=False, server_default=text("0")),
)

# The carrier's own tracking events (GET /shipments/{id}/history), kept as first seen.
carrier_events = Table(
    "carrier_events",
    metadata,
    Column("shipment_id", String(64), ForeignKey("shipments.id"), nullable=False),
    Column("event_key", String(64), nullable=False, doc="a digest of status, date, description and location"),
    Column("carrier_status", String(64), nullable=False),
    Column("occurred_at", UtcDateTime),
    Column("description", Text),
    Column("location", Text),
    Column("recorded_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("shipment_id", "event_key"),
)

status_changes = Table(
    "shipment_status_changes",
    metadata,
    Column("shipment_id", String(64), ForeignKey("shipments.id"), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("previous_status", String(32)),
    Column("status", String(32), nullable=False),
    Column("carrier_status", String(64)),
    Column("changed_at", UtcDateTime, nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("data", Text, doc="the change as published (JSON); what is sent on, whatever a message naming it says"),
    PrimaryKeyConstraint("shipment_id", "sequence"),
)

# The newest sequence relayed to Omnitron per shipment: never relay an older one after it.
# A call that got no answer may still land at Omnitron after a newer one: until it has
# settled, the newest relay is kept so it can be sent again (services/omnitron_publisher/settle.py).
omnitron_cursor = Table(
    "omnitron_cursor",
    metadata,
    Column("shipment_id", String(64), primary_key=True),
    Column("last_sequence", Integer, nullable=False),
    Column("last_relay", Text, doc="the newest relayed change: status, event id and its calls (JSON)"),
    Column("unsettled_sequence", Integer, doc="the newest sequence of a call that may still land"),
    Column("unsettled_until", UtcDateTime, doc="when such a call has surely landed or never will"),
    Index(
        "ix_omnitron_cursor_unsettled",
        "unsettled_until",
        postgresql_where=text("unsettled_until IS NOT NULL"),
        sqlite_where=text("unsettled_until IS NOT NULL"),
    ),
)

omnitron_relays = Table(
    "omnitron_relays",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("shipment_id", String(64), nullable=False, index=True),
    Column("sequence", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column(
        "outcome",
        String(32),
        nullable=False,
        doc="sent, skipped_stale, or resent (the newest sent again after an unanswered call)",
    ),
    Column("calls", Integer, nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("relayed_at", UtcDateTime, nullable=False),
    Column(
        "superseded_items",
        Text,
        doc="order items of the change held by a package packed later: recorded, not sent (JSON list)",
    ),
)

# Commands (CONTRACT.md §2 "Operator commands") that arrived before their package's
# PackagePacked: applied, in arrival order, once the package is packed (services/commands/waiting.py).
waiting_commands = Table(
    "waiting_commands",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("source", String(255), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("package_id", String(255), nullable=False, index=True),
    Column("event_type", String(64), nullable=False),
    Column("body", Text, nullable=False, doc="the command as a structured CloudEvent"),
    Column("received_at", UtcDateTime, nullable=False),
    UniqueConstraint("source", "event_id", name="uq_waiting_commands_event"),
)
