"""Odd messages an upstream system can send, each with what the contract says must become of it.

Every strategy draws an :class:`OddMessage`: a routing key, raw body bytes, AMQP properties
and a header table, the verdict the contract (docs/contract.md §1–2) demands — dead-lettered
at once, applied, or either — and how to see it applied. Bodies start from the valid events
of tests/events.py and are spoiled one way or a few ways at a time, so the verdict follows
from the spoilings without a second parser.

Header values cover every AMQP field type a client in another language can write, not only
the ones pika writes: :class:`RawField` carries the wire bytes of a value itself (a
timestamp past year 9999, a float, an unsigned 64-bit integer, a type code nobody knows).
"""

from __future__ import annotations

import copy
import json
import struct
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Callable

import pika.data
from hypothesis import strategies as st

from contracts.commands import COMMAND_ROUTING_KEYS
from shared import naming

from events import (
    package_cancelled,
    package_packed,
    package_shipped,
    shipment_info_updated,
    shipment_status_changed,
    shipment_status_set,
)

TRACER = "hostile-case"
MIB = 1024 * 1024


class Verdict(str, Enum):
    DEAD = "dead-lettered at once"
    APPLIED = "applied"
    EITHER = "applied or dead-lettered at once"

    def __and__(self, other: "Verdict") -> "Verdict":
        """Two spoilings together: dead wins, then either."""
        for verdict in (Verdict.DEAD, Verdict.EITHER):
            if verdict in (self, other):
                return verdict
        return Verdict.APPLIED


DEAD, APPLIED, EITHER = Verdict.DEAD, Verdict.APPLIED, Verdict.EITHER


@dataclass
class OddMessage:
    routing_key: str
    body: bytes
    expect: Verdict
    why: str
    properties: dict = field(default_factory=dict)  # pika.BasicProperties keywords, headers aside
    headers: dict | None = None
    # ("packed" | "shipped" | "command", package id): how to see it applied.
    probe: tuple[str, str] | None = None

    def __repr__(self) -> str:  # hypothesis prints this for a failing example: keep it readable
        body = self.body if len(self.body) <= 300 else self.body[:200] + b"..." + self.body[-50:]
        return (
            f"OddMessage(why={self.why!r}, routing_key={self.routing_key!r}, expect={self.expect.name}, "
            f"properties={self.properties!r}, headers={_short(self.headers)!r}, body={body!r} "
            f"({len(self.body)} bytes))"
        )

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))


def _short(value, limit: int = 400):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# ---- header values on the wire ------------------------------------------------------------


@dataclass(frozen=True)
class RawField:
    """A header value as type code and bytes, written as is (pika writes only some types)."""

    code: bytes
    payload: bytes = b""

    def __repr__(self) -> str:
        return f"RawField({self.code!r}, {self.payload!r})"


def _encode_value(pieces: list, value) -> int:
    if isinstance(value, RawField):
        pieces.append(value.code + value.payload)
        return len(value.code) + len(value.payload)
    if isinstance(value, float):  # what Java's and Go's clients write for a double
        pieces.append(struct.pack(">cd", b"d", value))
        return 9
    return _pika_encode_value(pieces, value)


def _decode_value(encoded: bytes, offset: int):
    # A timestamp past what datetime holds stays a RawField, so dead letters carrying one can be read.
    if encoded[offset : offset + 1] == b"T":
        (seconds,) = struct.unpack_from(">Q", encoded, offset + 1)
        try:
            datetime.fromtimestamp(seconds, timezone.utc)
        except (OverflowError, ValueError, OSError):
            return timestamp(seconds), offset + 9
    return _pika_decode_value(encoded, offset)


_pika_encode_value, _pika_decode_value = pika.data.encode_value, pika.data.decode_value
# Headers nested thousands of levels deep are encoded and read back by pika's recursion.
DEEP_HEADER_RECURSION = 50_000


def install_raw_fields() -> None:
    """Teaches this process's pika the field types other clients write and read (tests only)."""
    pika.data.encode_value, pika.data.decode_value = _encode_value, _decode_value


@contextmanager
def deep_recursion():
    """Room for pika to write and read deep header tables (hypothesis lowers the limit while a test runs)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, DEEP_HEADER_RECURSION))
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def timestamp(seconds: int) -> RawField:
    return RawField(b"T", struct.pack(">Q", seconds))


# RabbitMQ itself refuses NaN and infinite doubles in a header table (it closes the publisher's
# connection, 541 INTERNAL_ERROR), and unknown type codes: such values never reach the services.
RAW_FIELDS = [
    timestamp(0),
    timestamp(2**33),
    timestamp(253402300800),
    timestamp(2**63),
    timestamp(2**64 - 1),
    RawField(b"b", struct.pack(">b", -128)),
    RawField(b"B", struct.pack(">B", 255)),
    RawField(b"s", struct.pack(">h", -32768)),
    RawField(b"u", struct.pack(">H", 65535)),
    RawField(b"i", struct.pack(">I", 2**32 - 1)),
    RawField(b"L", struct.pack(">Q", 2**64 - 1)),
    RawField(b"f", struct.pack(">f", 1.5)),
    RawField(b"d", struct.pack(">d", -0.0)),
    RawField(b"D", struct.pack(">Bi", 255, 2**31 - 1)),
    RawField(b"D", struct.pack(">Bi", 0, -(2**31))),
]


class _Deep:
    """Short to print: hypothesis and assertion messages show the depth, not the thousands of brackets."""

    def __repr__(self) -> str:
        return f"<{type(self).__bases__[-1].__name__} nested {self.depth} levels>"

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))


class DeepList(_Deep, list):
    def __init__(self, depth: int):
        value: list = []
        for _ in range(depth - 1):
            value = [value]
        super().__init__([value])
        self.depth = depth


class DeepTable(_Deep, dict):
    def __init__(self, depth: int):
        value: dict = {}
        for _ in range(depth - 1):
            value = {"t": value}
        super().__init__({"t": value})
        self.depth = depth


DEEP_HEADERS = [DeepList(1100), DeepList(5000), DeepTable(1100), DeepTable(3000)]

_decimals = st.builds(
    lambda raw, places: Decimal(raw).scaleb(-places), st.integers(-(2**31), 2**31 - 1), st.integers(0, 9)
)
_datetimes = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30))
_scalars = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40),
    st.booleans(),
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, -1, 2**31, 2**63 - 1, -(2**63)]),
    st.floats(allow_nan=False, allow_infinity=False),
    _decimals,
    _datetimes,
    st.sampled_from(RAW_FIELDS),
    st.sampled_from(DEEP_HEADERS),
)
amqp_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=10,
)
# Our own header names and the broker's, from outside: honoured only through oms.retry.
ODD_HEADER_NAMES = [
    naming.HEADER_ATTEMPTS,
    naming.HEADER_NOT_BEFORE,
    naming.HEADER_ROUTING_KEY,
    naming.HEADER_SERVICE,
    naming.HEADER_QUEUE,
    naming.HEADER_ERROR_CLASS,
    naming.HEADER_ERROR_MESSAGE,
    naming.HEADER_FIRST_FAILURE,
    naming.HEADER_LAST_FAILURE,
    naming.HEADER_REPLAYED_FROM,
    naming.HEADER_REPLAY_COUNT,
    naming.HEADER_REPLAYED_AT,
    naming.HEADER_PREVIOUS_ATTEMPTS,
    naming.HEADER_PREVIOUS_ERROR_MESSAGE,
    "x-death",
    "x-first-death-queue",
    "x-oms-something-new",
    "ce-id",
    "ce-type",
    "ce-source",
    "ce-time",
    "ce-subject",
    "ce-datacontenttype",
]
# Values of the right shape that would misroute, delay or miscount a message if believed.
_TEMPTING = {
    naming.HEADER_ATTEMPTS: [11, 12, 1000, -5, 0, "11", 1e308, True, 2**63 - 1, -(2**63), b"11", {"n": 11}],
    naming.HEADER_NOT_BEFORE: [
        "2026-11-27T10:00:00",
        "2099-01-01T00:00:00+00:00",
        "9999-12-31T23:59:59+00:00",
        "2000-01-01T00:00:00+00:00",
        "not a time",
        "",
        datetime(2099, 1, 1),
        datetime(2020, 1, 1),
        timestamp(2**63),
        1700000000,
        "2026-11-27T10:00:00+99:00",
    ],
    naming.HEADER_ROUTING_KEY: ["package.shipped", "shipment.status_changed.delivered", "", "#", b"package.packed"],
    "x-death": [
        [
            {
                "count": 10**6,
                "queue": "oms-shipments.packer",
                "reason": "expired",
                "exchange": "",
                "routing-keys": ["oms-shipments.packer"],
                "time": datetime(2026, 1, 1),
            }
        ],
        [{"count": "many"}],
        [None],
        "not a list",
        [[[]]],
    ],
}
_own_header_values = st.sampled_from(ODD_HEADER_NAMES).flatmap(
    lambda name: st.tuples(
        st.just(name), st.sampled_from(_TEMPTING[name]) | amqp_values if name in _TEMPTING else amqp_values
    )
)
odd_headers = st.one_of(
    st.dictionaries(
        st.text(min_size=1, max_size=30).filter(
            lambda k: not k.startswith(("x-oms-", "ce-", TRACER)) and k.lower() != "compression"
        ),
        amqp_values,
        max_size=5,
    ),
    st.lists(_own_header_values, min_size=1, max_size=4).map(dict),
)


# ---- valid events to spoil ------------------------------------------------------------------


def fresh_package_id(tag: str) -> str:
    return f"PKG-{tag}-{uuid.uuid4().hex[:12]}"


def _item_ids() -> list[int]:
    base = uuid.uuid4().int % 10**12 + 10**13  # apart from the normal packages' ids
    return [base, base + 1]


def packed_event(package_id: str) -> dict:
    event = package_packed(package_id, f"ORD-{package_id}", _item_ids(), payment=True)
    event["data"]["stock_location"] = {"id": "42", "name": "Kadikoy Store"}
    event["subject"] = package_id
    return event


def shipped_event(package_id: str) -> dict:
    return package_shipped(package_id)


def dumps(value) -> bytes:
    return json.dumps(value).encode()


# (what, path, value or REMOVE, verdict): the contract's words on PackagePacked values.
REMOVE = object()
SAME_AS_0 = "<same as item 0>"
LONG = "x" * 100_000
PACKED_SPOILINGS = [
    ("order item id true", "data.items.0.order_item_id", True, DEAD),
    ("order item id 2.0", "data.items.0.order_item_id", 2.0, DEAD),
    ("order item id '2'", "data.items.0.order_item_id", "2", DEAD),
    ("order item id 0", "data.items.0.order_item_id", 0, DEAD),
    ("order item id -1", "data.items.0.order_item_id", -1, DEAD),
    ("order item id 2^63", "data.items.0.order_item_id", 2**63, DEAD),
    ("order item id 10^30", "data.items.0.order_item_id", 10**30, DEAD),
    ("order item id 2^63-1", "data.items.0.order_item_id", 2**63 - 1, EITHER),
    ("order item id null", "data.items.0.order_item_id", None, DEAD),
    ("quantity true", "data.items.0.quantity", True, DEAD),
    ("quantity 2.0", "data.items.0.quantity", 2.0, DEAD),
    ("quantity '2'", "data.items.0.quantity", "2", DEAD),
    ("quantity 0", "data.items.0.quantity", 0, DEAD),
    ("quantity 2^31", "data.items.0.quantity", 2**31, EITHER),
    ("quantity 2^63", "data.items.0.quantity", 2**63, DEAD),
    ("deci NaN", "data.items.0.deci", float("nan"), DEAD),
    ("deci Infinity", "data.items.0.deci", float("inf"), DEAD),
    ("deci -Infinity", "data.items.0.deci", float("-inf"), DEAD),
    ("deci 1e308", "data.items.0.deci", 1e308, EITHER),
    ("deci 2 (an integer)", "data.items.0.deci", 2, APPLIED),
    ("deci '1.5'", "data.items.0.deci", "1.5", DEAD),
    ("deci -1", "data.items.0.deci", -1, DEAD),
    ("payment amount 120.5 (a number)", "data.payment.amount", 120.5, APPLIED),
    ("payment amount 'NaN'", "data.payment.amount", "NaN", DEAD),
    ("payment amount 'Infinity'", "data.payment.amount", "Infinity", DEAD),
    ("payment amount NaN", "data.payment.amount", float("nan"), DEAD),
    ("payment amount true", "data.payment.amount", True, DEAD),
    ("payment amount 'lots'", "data.payment.amount", "lots", DEAD),
    ("payment amount 1e400 as text", "data.payment.amount", "1e400", EITHER),
    ("duplicate order item ids", "data.items.1.order_item_id", SAME_AS_0, DEAD),
    ("sku of 255 characters", "data.items.0.sku", "s" * 255, APPLIED),
    ("sku of 256 characters", "data.items.0.sku", "s" * 256, DEAD),
    ("item name of 256 characters", "data.items.0.name", "n" * 256, DEAD),
    ("barcode of 100k characters", "data.items.0.barcode", LONG, DEAD),
    ("order number of 256 characters", "data.order_number", "O" * 256, DEAD),
    ("delivery note of 2000 characters", "data.delivery_note", "d" * 2000, APPLIED),
    ("delivery note of 2001 characters", "data.delivery_note", "d" * 2001, DEAD),
    ("address line of 2000 characters", "data.destination.address_line", "a" * 2000, APPLIED),
    ("address line of 2001 characters", "data.destination.address_line", "a" * 2001, DEAD),
    ("city of 100k characters", "data.destination.city", LONG, DEAD),
    ("name with U+0000", "data.destination.name", "Ada\u0000", DEAD),
    ("sku with U+0000", "data.items.0.sku", "SKU\u0000", DEAD),
    ("surname with a lone surrogate", "data.destination.surname", "Love\ud800lace", DEAD),
    ("delivery note with a lone low surrogate", "data.delivery_note", "\udfff", DEAD),
    ("a name in emoji and RTL script", "data.destination.name", "\U0001f4e6 \u0639\u0644\u064a", APPLIED),
    ("packed_at without a time zone", "data.packed_at", "2026-11-27T10:00:00", DEAD),
    ("packed_at at +14:00", "data.packed_at", "2026-11-27T10:00:00+14:00", APPLIED),
    ("packed_at at -12:00", "data.packed_at", "2026-11-27T10:00:00-12:00", APPLIED),
    ("packed_at at +24:00", "data.packed_at", "2026-11-27T10:00:00+24:00", DEAD),
    ("packed_at in month 13", "data.packed_at", "2026-13-01T10:00:00Z", DEAD),
    ("packed_at as a number", "data.packed_at", 1764237600, EITHER),
    ("packed_at in year 9999", "data.packed_at", "9999-12-31T23:59:59Z", EITHER),
    ("packed_at in year 1", "data.packed_at", "0001-01-01T00:00:00+01:00", EITHER),
    ("envelope time without a zone", "time", "2026-11-27T10:00:00", EITHER),
    ("delivery type in lower case", "data.delivery_type", "customer", DEAD),
    ("country code of one letter", "data.destination.country_code", "T", DEAD),
    ("no items", "data.items", [], DEAD),
    ("items as text", "data.items", "two shirts", DEAD),
    ("an unknown carrier", "data.carrier", "no-such-carrier", EITHER),
    ("no package id", "data.package_id", REMOVE, DEAD),
    ("no order number", "data.order_number", REMOVE, DEAD),
    ("no destination", "data.destination", REMOVE, DEAD),
    ("no packed_at", "data.packed_at", REMOVE, DEAD),
    ("no delivery note", "data.delivery_note", REMOVE, APPLIED),
    ("no payment", "data.payment", REMOVE, APPLIED),
    ("payment null", "data.payment", None, APPLIED),
    ("no stock location", "data.stock_location", REMOVE, APPLIED),
    ("no barcode, name or deci", "data.items.0.barcode", REMOVE, APPLIED),
    ("an unknown data field", "data.gift_wrap", {"colour": "red", "layers": [1, 2, 3]}, APPLIED),
    (
        "an unknown envelope attribute",
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        APPLIED,
    ),
    ("data nested 50 levels in an unknown field", "data.extra", "<nested 50>", APPLIED),
    ("data nested 900 levels in an unknown field", "data.extra", "<nested 900>", EITHER),
    ("specversion 1.1", "specversion", "1.1", DEAD),
    ("specversion 1.0 as a number", "specversion", 1.0, DEAD),
    ("an empty id", "id", "", DEAD),
    ("an id as a number", "id", 12345, DEAD),
    ("an id of 256 characters", "id", "i" * 256, DEAD),
    ("no source", "source", REMOVE, DEAD),
    ("an unknown type", "type", "PackageTeleported", DEAD),
    ("the type in lower case", "type", "packagepacked", DEAD),
    ("data as a list", "data", [1, 2], DEAD),
    ("data null", "data", None, DEAD),
]
SHIPPED_SPOILINGS = [
    ("shipped_at without a zone", "data.shipped_at", "2026-11-27T12:30:00", DEAD),
    ("shipped_at at -23:59", "data.shipped_at", "2026-11-27T12:30:00-23:59", APPLIED),
    ("shipped_at with nanoseconds", "data.shipped_at", "2026-11-27T12:30:00.123456789Z", EITHER),
    ("shipped_at empty", "data.shipped_at", "", DEAD),
    ("package id of 256 characters", "data.package_id", "P" * 256, DEAD),
    ("package id with U+0000", "data.package_id", "PKG\u0000", DEAD),
    ("package id empty", "data.package_id", "", DEAD),
    ("package id as a number", "data.package_id", 1001, DEAD),
    ("tracking fields for an integrated carrier", "data.tracking_number", "ABC123", APPLIED),
    ("an unknown data field", "data.courier_mood", "cheerful", APPLIED),
]
# PackageShipped's optional fields for carriers without integration (contract §2): bounded like
# every string (test_regressions.py expects them refused).
SHIPPED_SPOILINGS_NOT_MODELLED = [
    ("a shipping company of 256 characters", "data.shipping_company", "c" * 256, DEAD),
    ("a tracking URL of 2001 characters", "data.tracking_url", "https://t.example/" + "u" * 1983, DEAD),
]


# ---- operator commands (contract §2, "Operator commands") ---------------------------------
# Each names a package of its own that is never packed: a command the contract accepts is
# kept until its package is packed (waiting_commands, "never dropped"), whatever it says, so
# its verdict follows from its values alone; how a command is judged against a shipment is
# tests/integration/test_operator_commands.py's.


def cancelled_event(package_id: str) -> dict:
    return package_cancelled(package_id)


def info_updated_event(package_id: str) -> dict:
    return shipment_info_updated(package_id, shipping_company="Kadikoy Courier", tracking_number="KC-1001")


def status_set_event(package_id: str) -> dict:
    return shipment_status_set(package_id, "delivered")


def _package_id_spoilings() -> list:
    return [
        ("package id of 256 characters", "data.package_id", "P" * 256, DEAD),
        ("package id with U+0000", "data.package_id", "PKG\u0000", DEAD),
        ("package id empty", "data.package_id", "", DEAD),
        ("package id as a number", "data.package_id", 1001, DEAD),
        ("no package id", "data.package_id", REMOVE, DEAD),
    ]


def _time_spoilings(name: str) -> list:
    path = f"data.{name}"
    return [
        (f"{name} without a zone", path, "2026-11-27T11:00:00", DEAD),
        (f"{name} at +14:00", path, "2026-11-27T11:00:00+14:00", APPLIED),
        (f"{name} at +24:00", path, "2026-11-27T11:00:00+24:00", DEAD),
        (f"{name} in month 13", path, "2026-13-01T11:00:00Z", DEAD),
        (f"{name} empty", path, "", DEAD),
        (f"{name} as a number", path, 1764241200, EITHER),
        (f"no {name}", path, REMOVE, DEAD),
    ]


def _reason_spoilings() -> list:
    return [
        ("a reason of 2000 characters", "data.reason", "r" * 2000, APPLIED),
        ("a reason of 2001 characters", "data.reason", "r" * 2001, DEAD),
        ("a reason with U+0000", "data.reason", "gone\u0000", DEAD),
        ("a reason with a lone surrogate", "data.reason", "\ud800", DEAD),
        ("a reason in emoji and RTL script", "data.reason", "\U0001f4e6 \u0639\u0644\u064a", APPLIED),
        ("a reason as a number", "data.reason", 42, DEAD),
        ("reason null", "data.reason", None, APPLIED),
        ("no reason", "data.reason", REMOVE, APPLIED),
    ]


#: The envelope's own spoilings (every path outside ``data``), as PackagePacked has them.
ENVELOPE_SPOILINGS = [spoiling for spoiling in PACKED_SPOILINGS if not spoiling[1].startswith("data.")]
COMMON_COMMAND_SPOILINGS = [
    *ENVELOPE_SPOILINGS,
    *_package_id_spoilings(),
    ("an unknown data field", "data.refund", {"amount": "120.50", "to": ["card"]}, APPLIED),
    ("data nested 900 levels in an unknown field", "data.extra", "<nested 900>", EITHER),
]
CANCELLED_SPOILINGS = [*COMMON_COMMAND_SPOILINGS, *_reason_spoilings(), *_time_spoilings("cancelled_at")]
INFO_UPDATED_SPOILINGS = [
    *COMMON_COMMAND_SPOILINGS,
    *_time_spoilings("updated_at"),
    ("a carrier of 256 characters", "data.carrier", "c" * 256, DEAD),
    ("an empty carrier", "data.carrier", "", DEAD),
    ("an unknown carrier", "data.carrier", "no-such-carrier", APPLIED),  # judged once packed
    ("carrier null", "data.carrier", None, APPLIED),
    ("a tracking number of 255 characters", "data.tracking_number", "t" * 255, APPLIED),
    ("a tracking number of 256 characters", "data.tracking_number", "t" * 256, DEAD),
    ("tracking number null", "data.tracking_number", None, APPLIED),
    ("a tracking URL of 2000 characters", "data.tracking_url", "https://t.example/" + "u" * 1982, APPLIED),
    ("a tracking URL of 2001 characters", "data.tracking_url", "https://t.example/" + "u" * 1983, DEAD),
    ("a shipping company of 256 characters", "data.shipping_company", "c" * 256, DEAD),
    ("a shipping company with U+0000", "data.shipping_company", "Kadikoy\u0000", DEAD),
    ("a shipping company as a number", "data.shipping_company", 7, DEAD),
    # The whole data, last (it overwrites every other spoiling of data): nothing to update.
    (
        "nothing to update (every field null)",
        "data",
        {
            "package_id": "PKG-NOTHING",
            "carrier": None,
            "tracking_number": None,
            "tracking_url": None,
            "shipping_company": None,
            "updated_at": "2026-11-27T11:30:00Z",
        },
        DEAD,
    ),
]
STATUS_SET_SPOILINGS = [
    *COMMON_COMMAND_SPOILINGS,
    *_reason_spoilings(),
    *_time_spoilings("set_at"),
    ("status ready_for_pickup", "data.status", "ready_for_pickup", APPLIED),
    ("status attempted_delivery", "data.status", "attempted_delivery", APPLIED),
    ("status delivery_failed", "data.status", "delivery_failed", APPLIED),
    ("status shipped (not settable)", "data.status", "shipped", DEAD),
    ("status cancelled (not settable)", "data.status", "cancelled", DEAD),
    ("status pending (not settable)", "data.status", "pending", DEAD),
    ("status in upper case", "data.status", "DELIVERED", DEAD),
    ("an unknown status", "data.status", "teleported", DEAD),
    ("status null", "data.status", None, DEAD),
    ("status as a number", "data.status", 6, DEAD),
    ("no status", "data.status", REMOVE, DEAD),
]


@dataclass(frozen=True)
class Kind:
    """One kind of consumed event the suite sends: its type, routing key, a valid body, its spoilings."""

    event_type: str
    routing_key: str
    make: Callable[[str], dict]
    spoilings: list
    probe: str  # how World.applied sees it applied


KINDS = {
    "packed": Kind("PackagePacked", "package.packed", packed_event, PACKED_SPOILINGS, "packed"),
    "shipped": Kind("PackageShipped", "package.shipped", shipped_event, SHIPPED_SPOILINGS, "shipped"),
    "cancelled": Kind(
        "PackageCancelled", COMMAND_ROUTING_KEYS["PackageCancelled"], cancelled_event, CANCELLED_SPOILINGS, "command"
    ),
    "info_updated": Kind(
        "ShipmentInfoUpdated",
        COMMAND_ROUTING_KEYS["ShipmentInfoUpdated"],
        info_updated_event,
        INFO_UPDATED_SPOILINGS,
        "command",
    ),
    "status_set": Kind(
        "ShipmentStatusSet",
        COMMAND_ROUTING_KEYS["ShipmentStatusSet"],
        status_set_event,
        STATUS_SET_SPOILINGS,
        "command",
    ),
}
COMMAND_KINDS = ("cancelled", "info_updated", "status_set")


def _nested(depth: int):
    value: object = "bottom"
    for _ in range(depth):
        value = {"n": value}
    return value


def _spoil(event: dict, what: str, path: str, value) -> bool:
    """Applies one spoiling in place; False if the event no longer has that place."""
    *parents, last = path.split(".")
    node = event
    try:
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            last = int(last)
            if last >= len(node):
                return False
        elif not isinstance(node, dict):
            return False
        if value is REMOVE:
            if isinstance(node, dict):
                node.pop(last, None)
            return True
        if isinstance(value, str) and value == SAME_AS_0:
            value = event["data"]["items"][0]["order_item_id"]
        elif isinstance(value, str) and value.startswith("<nested "):
            value = _nested(int(value[len("<nested ") : -1]))
        node[last] = copy.deepcopy(value)
        return True
    except (KeyError, IndexError, TypeError, ValueError):
        return False


def _spoilings(kind: str) -> list:
    return KINDS[kind].spoilings


def event_with(kind: str, *whats: str) -> OddMessage:
    """A valid ``kind`` event (a key of ``KINDS``) spoiled the ways named (the tables' first column)."""
    table = {spoiling[0]: spoiling for spoiling in _spoilings(kind) + SHIPPED_SPOILINGS_NOT_MODELLED}
    return _spoiled(kind, [table[what] for what in whats])


@st.composite
def spoiled_event(draw, kind: str) -> OddMessage:
    """A valid event of ``kind`` (a key of ``KINDS``) with one to three of the contract's odd values."""
    return _spoiled(
        kind, draw(st.lists(st.sampled_from(_spoilings(kind)), min_size=1, max_size=3, unique_by=lambda s: s[0]))
    )


def _spoiled(kind: str, spoilings: list) -> OddMessage:
    package_id = fresh_package_id(kind[:4].upper())
    event = KINDS[kind].make(package_id)
    applied: list[tuple[str, str, Verdict]] = []  # (what, path, verdict) of the spoilings that took
    # The copy of item 0's id goes last, so no later spoiling of that id undoes the duplicate;
    # so does a whole data, so that what it says is what is sent.
    for what, path, value, expect in sorted(
        spoilings, key=lambda s: (isinstance(s[2], str) and s[2] == SAME_AS_0) or s[1] == "data"
    ):
        if _spoil(event, what, path, value):
            # What this one overwrote (its path or below) no longer counts.
            applied = [a for a in applied if a[1] != path and not a[1].startswith(path + ".")]
            applied.append((what, path, expect))
    verdict = APPLIED
    for _, _, expect in applied:
        verdict &= expect
    applied_whats = [what for what, _, _ in applied] or ["nothing (the spoilings did not fit)"]
    probe_id = event["data"].get("package_id") if isinstance(event.get("data"), dict) else None
    probe = (KINDS[kind].probe, probe_id) if isinstance(probe_id, str) and probe_id == package_id else None
    if probe is None and verdict is not DEAD:
        verdict = EITHER
    return OddMessage(
        routing_key=KINDS[kind].routing_key,
        body=dumps(event),
        expect=verdict,
        why=f"{KINDS[kind].event_type} with " + ", ".join(applied_whats),
        properties=_cloudevents(),
        probe=probe,
    )


def _cloudevents(**more) -> dict:
    return {"delivery_mode": 2, "content_type": "application/cloudevents+json", **more}


def valid_event(
    kind: str, expect: Verdict = APPLIED, why: str = "", headers: dict | None = None, **properties
) -> OddMessage:
    """A valid ``kind`` event (a key of ``KINDS``); ``properties`` replace the structured defaults
    (None removes one)."""
    package_id = fresh_package_id(kind[:4].upper())
    event = KINDS[kind].make(package_id)
    merged = {k: v for k, v in {**_cloudevents(), **properties}.items() if v is not None}
    return OddMessage(
        routing_key=KINDS[kind].routing_key,
        body=dumps(event),
        expect=expect,
        why=why or f"a valid {KINDS[kind].event_type}",
        properties=merged,
        headers=headers,
        probe=(KINDS[kind].probe, package_id),
    )


# ---- bodies that are no event at all ----------------------------------------------------------


def _deep_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _deep_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _broken_bodies() -> dict[str, bytes]:
    valid = dumps(packed_event(fresh_package_id("CUT")))
    return {
        "an empty body": b"",
        "whitespace": b" \n\t ",
        "null": b"null",
        "a JSON number": b"42",
        "a JSON string": b'"PackagePacked"',
        "a JSON array of an event": b"[" + valid + b"]",
        "true": b"true",
        "truncated JSON": valid[: len(valid) // 2],
        "a lone brace": b"{",
        "JSON with a trailing comma": valid[:-1] + b",}",
        "two JSON objects": valid + valid,
        "non-UTF-8 bytes": b'{"specversion": "1.0", "id": "\xff\xfe\xfd"}',
        "NaN as the whole body": b"NaN",
        "an array nested 10 levels": _deep_array(10),
        "an array nested 1,000 levels": _deep_array(1000),
        "an array nested 100,000 levels": _deep_array(100_000),
        "an array nested 500,000 levels": _deep_array(500_000),
        "an object nested 200,000 levels": _deep_object(200_000),
        "a body of 1 MiB + 1 of spaces": b" " * (MIB + 1),
        "a string of 1 MiB": dumps(LONG * 11),
        "an integer of 5,000 digits": b"1" * 5000,
        "a body of NUL bytes": b"\x00" * 64,
    }


BROKEN_BODIES = sorted(_broken_bodies())


def broken(what: str, routing_key: str = "package.packed", headers: dict | None = None, **properties) -> OddMessage:
    """A body that is no event at all (contract §2: dead-lettered at once)."""
    merged = {k: v for k, v in {**_cloudevents(), **properties}.items() if v is not None}
    return OddMessage(
        routing_key=routing_key, body=_broken_bodies()[what], expect=DEAD, why=what, properties=merged, headers=headers
    )


@st.composite
def broken_body(draw) -> OddMessage:
    return broken(draw(st.sampled_from(BROKEN_BODIES)), draw(st.sampled_from(ROUTING_KEYS)))


ENCODINGS = {  # what: (Python codec, prefix, verdict)
    "a valid PackagePacked in UTF-16": ("utf-16", b"", DEAD),
    "a valid PackagePacked in UTF-16-LE without BOM": ("utf-16-le", b"", DEAD),
    "a valid PackagePacked in UTF-32": ("utf-32", b"", DEAD),
    "a valid PackagePacked in Latin-1": ("latin-1", b"", DEAD),
    "a valid PackagePacked after a UTF-8 BOM": ("utf-8", b"\xef\xbb\xbf", EITHER),
}


def encoded(what: str) -> OddMessage:
    """A valid event in another encoding than UTF-8, or UTF-8 with a byte order mark."""
    codec, prefix, verdict = ENCODINGS[what]
    package_id = fresh_package_id("ENC")
    event = packed_event(package_id)
    event["data"]["destination"]["city"] = "Üsküdar"
    body = prefix + json.dumps(event, ensure_ascii=False).encode(codec)
    return OddMessage(
        routing_key="package.packed",
        body=body,
        expect=verdict,
        why=what,
        properties=_cloudevents(),
        probe=("packed", package_id),
    )


@st.composite
def encoded_body(draw) -> OddMessage:
    return encoded(draw(st.sampled_from(sorted(ENCODINGS))))


def misrouted(event_type: str, routing_key: str) -> OddMessage:
    """A valid event under another type's routing key (contract §1: dead-lettered)."""
    package_id = fresh_package_id("MIS")
    kind = next((kind for kind in KINDS.values() if kind.event_type == event_type), None)
    body = (
        kind.make(package_id) if kind else shipment_status_changed(f"shp-{uuid.uuid4().hex}-1", 1, "pending", None, [1])
    )
    return OddMessage(
        routing_key=routing_key,
        body=dumps(body),
        expect=DEAD,
        why=f"a valid {event_type} under {routing_key}",
        properties=_cloudevents(),
    )


@st.composite
def misrouted_event(draw) -> OddMessage:
    event_type = draw(st.sampled_from([*(kind.event_type for kind in KINDS.values()), "ShipmentStatusChanged"]))
    keys = [kind.routing_key for kind in KINDS.values()]
    home = {kind.event_type: kind.routing_key for kind in KINDS.values()}.get(event_type)
    return misrouted(event_type, draw(st.sampled_from([key for key in keys if key != home])))


# ---- status changes the services never recorded ---------------------------------------------

STATUSES = [
    "pending",
    "registered",
    "shipped",
    "ready_for_pickup",
    "attempted_delivery",
    "delivered",
    "delivery_failed",
    "cancelled",
]


def forged(status: str, sequence: int = 1, shipment_id: str | None = None, item_ids: list | None = None) -> OddMessage:
    """A ShipmentStatusChanged naming a shipment the services never recorded (contract §2: dead)."""
    shipment_id = shipment_id or str(uuid.uuid4())
    item_ids = [uuid.uuid4().int % 10**12 + 10**14] if item_ids is None else item_ids
    event = shipment_status_changed(f"forged-{uuid.uuid4().hex[:8]}", sequence, status, None, item_ids)
    event["data"]["shipment_id"] = shipment_id
    return OddMessage(
        routing_key=f"shipment.status_changed.{status}",
        body=dumps(event),
        expect=DEAD,
        why=f"a forged {status} change #{sequence} of unknown shipment {shipment_id[:20]}",
        properties=_cloudevents(),
    )


@st.composite
def forged_status_change(draw) -> OddMessage:
    return forged(
        draw(st.sampled_from(STATUSES)),
        draw(st.sampled_from([1, 2, 3, 99, 2**31, 2**63 - 1])),
        draw(st.sampled_from([f"shp-{uuid.uuid4().hex}", str(uuid.uuid4()), "x" * 64])),
        draw(st.sampled_from([None, [], [True], [2**63]])),
    )


# ---- properties, encodings, headers -----------------------------------------------------------

ROUTING_KEYS = [
    "package.packed",
    "package.shipped",
    "shipment.status_changed.pending",
    "shipment.status_changed.delivered",
    *COMMAND_ROUTING_KEYS.values(),
]
CONTENT_TYPES = [
    (None, APPLIED),
    ("application/cloudevents+json", APPLIED),
    ("application/json", APPLIED),
    ("application/cloudevents+json; charset=utf-8", APPLIED),
    ("Application/JSON", APPLIED),
    ("application/cloudevents-batch+json", DEAD),
    ("text/plain", DEAD),
    ("application/xml", DEAD),
    ("application/octet-stream", DEAD),
    ("", EITHER),
    ("application/json;;;charset", EITHER),
    ("x" * 255, DEAD),
    ("ümlaut/json", DEAD),
]
CONTENT_ENCODINGS = [
    (None, APPLIED),
    ("utf-8", APPLIED),
    ("UTF-8", APPLIED),
    ("binary", APPLIED),
    ("Binary", APPLIED),
    ("gzip", DEAD),
    ("deflate", DEAD),
    ("br", DEAD),
    ("utf-16", DEAD),
    ("base64", DEAD),
    ("identity", DEAD),
    ("ü" * 100, DEAD),
    ("", EITHER),
]
COMPRESSION_HEADER = [None, "gzip", b"zstd", 1, True, {"algorithm": "gzip"}]
_short_texts = st.none() | st.text(max_size=20) | st.sampled_from(["", "x" * 255, "PackageShipped", "ü" * 127])
other_properties = st.fixed_dictionaries(
    {},
    optional={
        "type": _short_texts,
        "message_id": _short_texts,
        "correlation_id": _short_texts,
        "app_id": _short_texts,
        "reply_to": _short_texts,
        "cluster_id": _short_texts,
        "timestamp": st.sampled_from([0, 1, 2**31, 2**32, 253402300800, 2**63 - 1, 2**64 - 1]),
        "priority": st.integers(0, 255),
        "delivery_mode": st.sampled_from([1, 2]),
        "expiration": st.sampled_from(["86400000", "3600000"]),
        "user_id": st.just("guest"),
    },
)


@st.composite
def odd_properties(draw) -> OddMessage:
    """A valid event of any kind under odd AMQP properties and headers."""
    content_type, by_type = draw(st.sampled_from(CONTENT_TYPES))
    content_encoding, by_encoding = draw(st.sampled_from(CONTENT_ENCODINGS))
    compression = draw(st.sampled_from(COMPRESSION_HEADER))
    headers = draw(odd_headers)
    verdict = by_type & by_encoding
    if compression is not None:
        headers["compression"] = compression
        verdict &= DEAD
    why = f"a valid event with content type {content_type!r}, encoding {content_encoding!r}" + (
        f", compression header {compression!r}" if compression is not None else ""
    )
    return valid_event(
        draw(st.sampled_from(list(KINDS))),
        verdict,
        why,
        headers,
        **draw(other_properties),
        content_type=content_type,
        content_encoding=content_encoding,
    )


@st.composite
def odd_headers_on_a_valid_event(draw) -> OddMessage:
    """A valid event whose only oddity is its header table: the verdict is the event's own."""
    headers = draw(odd_headers)
    return valid_event(
        draw(st.sampled_from(list(KINDS))),
        APPLIED,
        f"a valid event with headers {_short(headers, 200)}",
        headers,
    )


@st.composite
def odd_headers_on_a_bad_event(draw) -> OddMessage:
    """A message to be dead-lettered that carries our own header names: its dead letter tells the truth."""
    message = draw(st.one_of(broken_body(), misrouted_event()))
    message.headers = draw(st.lists(_own_header_values, min_size=1, max_size=5).map(dict))
    message.why += f", with headers {_short(message.headers, 200)}"
    return message


# ---- binary content mode ------------------------------------------------------------------

BINARY_SPOILINGS = {
    None: APPLIED,
    "ce-subject": APPLIED,
    "ce-id as bytes": EITHER,
    "no ce-id": DEAD,
    "ce-specversion 0.3": DEAD,
    "ce-type unknown": DEAD,
    "ce-id as a number": EITHER,
    "ce-time as an AMQP timestamp": EITHER,
    "a cloudevents content type": DEAD,
    "no content type": EITHER,
    "ce-time without a zone": EITHER,
    "the whole envelope as the body": DEAD,
}


def binary_mode(kind: str, spoil: str | None = None) -> OddMessage:
    """A CloudEvent in binary content mode: attributes in ce- headers, the body is the data alone."""
    package_id = fresh_package_id("BIN")
    event = KINDS[kind].make(package_id)
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event["id"],
        "ce-source": event["source"],
        "ce-type": event["type"],
        "ce-time": event["time"],
    }
    content_type, body = "application/json", dumps(event["data"])
    if spoil == "ce-subject":
        headers["ce-subject"] = package_id
    elif spoil == "ce-id as bytes":
        headers["ce-id"] = event["id"].encode()
    elif spoil == "no ce-id":
        del headers["ce-id"]
    elif spoil == "ce-specversion 0.3":
        headers["ce-specversion"] = "0.3"
    elif spoil == "ce-type unknown":
        headers["ce-type"] = "PackageTeleported"
    elif spoil == "ce-id as a number":
        headers["ce-id"] = 12345
    elif spoil == "ce-time as an AMQP timestamp":
        headers["ce-time"] = datetime(2026, 11, 27, 10, tzinfo=timezone.utc)
    elif spoil == "a cloudevents content type":
        content_type = "application/cloudevents+json"  # then it is structured, and the body no envelope
    elif spoil == "no content type":
        content_type = None
    elif spoil == "ce-time without a zone":
        headers["ce-time"] = "2026-11-27T10:00:00"
    elif spoil == "the whole envelope as the body":
        body = dumps(event)
    properties = {"delivery_mode": 2, **({"content_type": content_type} if content_type else {})}
    return OddMessage(
        routing_key=KINDS[kind].routing_key,
        body=body,
        expect=BINARY_SPOILINGS[spoil],
        why=f"a binary-mode {event['type']}" + (f" with {spoil}" if spoil else ""),
        properties=properties,
        headers=headers,
        probe=(KINDS[kind].probe, package_id),
    )


@st.composite
def binary_mode_event(draw) -> OddMessage:
    return binary_mode(draw(st.sampled_from(list(KINDS))), draw(st.sampled_from(list(BINARY_SPOILINGS))))
