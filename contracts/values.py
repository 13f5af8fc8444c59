"""The value types of the contract (CONTRACT.md §2, "Values are checked as strictly as they are typed").

Each type is an annotated pydantic type, so the same rule holds for bytes from the wire and
for models the services build themselves, and the exported JSON Schemas say it too.

- integers: JSON integers from 1 to 2^63−1 (``2.0``, ``"2"`` and ``true`` are refused);
- numbers: finite; a money amount is a decimal string or a number;
- strings: at most 255 characters (long texts and URLs: 2,000), no U+0000, no lone surrogate;
- times: RFC 3339 text (or a ``datetime`` in Python), placeable on the UTC time line.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, WithJsonSchema

MAX_TEXT = 255
MAX_LONG_TEXT = 2000
MAX_ID = 2**63 - 1

# Checked by pydantic's own (Rust) code: a Python validator per string would double the
# cost of parsing an event. A lone surrogate already fails pydantic's str check
# ("string_unicode"); U+0000 fails this pattern. contracts/envelope.py words both errors.
NO_NUL_PATTERN = r"^[^\x00]*$"

#: A string of at most 255 characters without U+0000 or lone surrogates.
Text = Annotated[str, Field(max_length=MAX_TEXT, pattern=NO_NUL_PATTERN)]
#: The same with at least one character.
Name = Annotated[str, Field(min_length=1, max_length=MAX_TEXT, pattern=NO_NUL_PATTERN)]
#: Free text (a reason, a delivery note, an address line) or a URL: up to 2,000 characters.
LongText = Annotated[str, Field(max_length=MAX_LONG_TEXT, pattern=NO_NUL_PATTERN)]
#: ISO 3166 country code, two or three characters.
CountryCode = Annotated[str, Field(min_length=2, max_length=3, pattern=NO_NUL_PATTERN)]
#: ISO 4217 currency code, three characters.
CurrencyCode = Annotated[str, Field(min_length=3, max_length=3, pattern=NO_NUL_PATTERN)]
Url = LongText

#: A JSON integer from 1 to 2^63−1: ids, quantities, sequences.
PositiveInt = Annotated[int, Field(strict=True, ge=1, le=MAX_ID)]


def first_repeat(values: list[Any]) -> Any:
    """The first value that comes twice in ``values``, or None."""
    seen = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None


#: A finite number, zero or more (JSON integer or fraction; ``true`` and strings refused).
NonNegativeNumber = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]

_DECIMAL_TEXT = re.compile(r"^[0-9]{1,16}(\.[0-9]{1,4})?$")
_MONEY_SCHEMA = {"anyOf": [{"type": "string", "pattern": _DECIMAL_TEXT.pattern}, {"type": "number", "minimum": 0}]}


def _decimal_text_or_number(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("an amount is a decimal string or a number, not true or false")
    if isinstance(value, str) and not _DECIMAL_TEXT.fullmatch(value):
        raise ValueError('an amount as text is digits with an optional fraction of up to 4 places, like "120.50"')
    return value


#: Money: a decimal string ("120.50") or a number, finite, zero or more, at most 16 digits
#: before the point and 4 after.
Money = Annotated[
    Decimal,
    BeforeValidator(_decimal_text_or_number),
    Field(ge=0, max_digits=20, decimal_places=4, allow_inf_nan=False),
    WithJsonSchema(_MONEY_SCHEMA),
]

# An RFC 3339 date and time starts like this; pydantic checks the rest. Without it pydantic
# would also take numbers and digit strings as Unix timestamps.
_DATE_TIME_START = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")


def _time_text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or len(value) > 64 or not _DATE_TIME_START.match(value):
        raise ValueError('a time is an RFC 3339 date and time, like "2026-11-27T10:00:00Z"')
    return value


def _on_the_utc_line(value: datetime) -> datetime:
    # 0001-01-01T00:00:00+01:00 is a valid text whose UTC time does not exist in Python:
    # refused here rather than failing later in the database layer.
    if value.tzinfo is not None:
        try:
            value.astimezone(timezone.utc)
        except OverflowError:
            raise ValueError("the time is outside the years 1 to 9999 in UTC") from None
    return value


#: A point in time, RFC 3339.
Time = Annotated[datetime, BeforeValidator(_time_text), AfterValidator(_on_the_utc_line)]
#: A point in time with its UTC offset (upstream times: a bare local time cannot be placed).
AwareTime = Annotated[AwareDatetime, BeforeValidator(_time_text), AfterValidator(_on_the_utc_line)]
