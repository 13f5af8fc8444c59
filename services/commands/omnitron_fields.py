"""What the operator commands add to Omnitron's calls (CONTRACT.md §5).

``label_url``, a hand-given ``shipping_company`` and a ``reason`` go in the ``extra_field``
where a change has them; a change of a status with an Omnitron code is also sent as the
``extra_field`` when it has a hand-given ``shipping_company``, and when it is an
information change (so Omnitron shows the new tracking information).
"""

from __future__ import annotations

from contracts import ShipmentStatusChanged

OPTIONAL_FIELDS = ("label_url", "shipping_company", "reason")


def extra_field_details(change: ShipmentStatusChanged) -> dict:
    return {name: getattr(change, name) for name in OPTIONAL_FIELDS if getattr(change, name, None)}


def also_extra_field(change: ShipmentStatusChanged) -> bool:
    return bool(getattr(change, "shipping_company", None)) or change.is_info_change
