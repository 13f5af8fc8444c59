"""Reading a delivery's AMQP metadata, none of which is trusted: nothing here raises.

A header value is whatever the sender's field table held: text, undecodable bytes,
integers of any size, NaN and infinite floats, decimals, booleans, timestamps (py-amqp
hands them over as naive UTC datetimes), nested tables and arrays, or nothing.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from shared import naming

# Far above any attempt or replay count the services write; a count read is clamped to it
# so that counting one more always stays an AMQP integer.
MAX_COUNT = 1_000_000
MAX_INSTANT_TEXT = 64
# Contract §1: a body is UTF-8; these encodings (any case) say nothing else.
READABLE_ENCODINGS = frozenset({"utf-8", "binary"})
COMPRESSION_HEADER = "compression"
_SHOWN_VALUE = 80


def is_own(name: object) -> bool:
    """An ``x-oms-`` header (in any case): ours, trusted only through ``oms.retry``."""
    return isinstance(name, str) and name.lower().startswith(naming.OWN_HEADER_PREFIX)


def without_own(headers: object) -> dict[Any, Any]:
    """The headers without ours: what is kept of a delivery that did not come through ``oms.retry``."""
    if not isinstance(headers, dict):
        return {}
    return {name: value for name, value in headers.items() if not is_own(name)}


def read_count(value: Any) -> int:
    """A count (attempts, replays): 0 when it is not a number, clamped to 0..MAX_COUNT."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return 0
    try:
        count = int(value)  # text, integers, decimals, floats; not tables, arrays, timestamps, None
    except (TypeError, ValueError, ArithmeticError):
        return 0
    return min(max(count, 0), MAX_COUNT)


def read_instant(value: object) -> datetime | None:
    """A moment, timezone-aware; None when unreadable.

    ISO 8601 text (what the services write) or an AMQP timestamp. A moment without a
    timezone is read as UTC: AMQP timestamps are UTC by definition, and the services
    always write an offset, so a naive text can only be someone's UTC.
    """
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        if len(value) > MAX_INSTANT_TEXT:
            return None
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def encoding_refusal(content_encoding: object, headers: object) -> str | None:
    """Why a body must not be decoded (contract §1), or None when it is plain UTF-8."""
    if content_encoding not in (None, "") and str(content_encoding).strip().lower() not in READABLE_ENCODINGS:
        return (
            f"content encoding {_shown(content_encoding)} is not read: bodies are UTF-8 "
            f"(absent, utf-8 or binary); dead-lettered undecoded"
        )
    for name, value in headers.items() if isinstance(headers, dict) else ():
        if isinstance(name, str) and name.lower() == COMPRESSION_HEADER:
            return f"a compressed body ({name} header {_shown(value)}) is not read; dead-lettered undecoded"
    return None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_VALUE else text[:_SHOWN_VALUE] + "…"
