"""A dead letter as the operator's tools see it, what selects it, and how it starts over.

Pure data: nothing here talks to a broker (services/tools/dlq.py does). The failure headers
are the ones shared/disposal.py writes; a message the broker dead-lettered itself
(a quorum queue's delivery limit) has only ``x-death``, and its reason is taken from there.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pika

from shared import naming
from shared.headers import read_count, read_instant, without_own
from shared.naming import (  # noqa: E402  (re-exported for the CLI and tests)
    HEADER_PREVIOUS_ATTEMPTS,
    HEADER_PREVIOUS_ERROR_CLASS,
    HEADER_PREVIOUS_ERROR_MESSAGE,
    HEADER_PREVIOUS_FIRST_FAILURE,
    HEADER_PREVIOUS_LAST_FAILURE,
    HEADER_REPLAY_COUNT,
    HEADER_REPLAYED_AT,
)

# The failed attempt's bookkeeping: a replay starts a fresh retry cycle without it (and
# is handled at once: a wait its last failure asked for is over).
_RESET_HEADERS = (
    naming.HEADER_ATTEMPTS,
    naming.HEADER_ERROR_CLASS,
    naming.HEADER_ERROR_MESSAGE,
    naming.HEADER_FIRST_FAILURE,
    naming.HEADER_LAST_FAILURE,
    naming.HEADER_NOT_BEFORE,
    "x-death",
    "x-delivery-count",
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``90``, ``45s``, ``10m``, ``2h``, ``1d``, ``1w`` → a timedelta (no unit: seconds)."""
    match = _DURATION.match(text or "")
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 45s, 10m, 2h, 1d)")
    return timedelta(seconds=float(match[1]) * _UNITS[(match[2] or "s").lower()])


def _text(value) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _broker_reason(headers: dict) -> str | None:
    """A message the broker dead-lettered itself (a quorum queue's delivery limit) has x-death only."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return f"broker:{_text(deaths[0].get('reason'))}"
    return None


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    position: int  # 0 = the head of the queue when it was read
    body: bytes
    properties: pika.BasicProperties
    headers: dict = field(default_factory=dict)
    event_type: str | None = None
    package_id: str | None = None

    @classmethod
    def from_delivery(cls, queue: str, position: int, properties: pika.BasicProperties, body: bytes) -> "DeadLetter":
        event_type, package_id = properties.type, None
        try:
            event = json.loads(body)
        except (ValueError, RecursionError):
            event = None
        if isinstance(event, dict):
            if isinstance(event.get("type"), str):
                event_type = event["type"]
            data = event.get("data")
            if isinstance(data, dict) and isinstance(data.get("package_id"), str):
                package_id = data["package_id"]
        return cls(queue, position, body, properties, dict(properties.headers or {}), event_type, package_id)

    @property
    def message_id(self) -> str | None:
        return self.properties.message_id

    @property
    def error_class(self) -> str | None:
        return _text(self.headers.get(naming.HEADER_ERROR_CLASS)) or _broker_reason(self.headers)

    @property
    def error_message(self) -> str | None:
        return _text(self.headers.get(naming.HEADER_ERROR_MESSAGE))

    @property
    def attempts(self) -> int:
        return read_count(self.headers.get(naming.HEADER_ATTEMPTS))

    @property
    def first_failure_at(self) -> datetime | None:
        return read_instant(self.headers.get(naming.HEADER_FIRST_FAILURE))

    @property
    def last_failure_at(self) -> datetime | None:
        return read_instant(self.headers.get(naming.HEADER_LAST_FAILURE))

    @property
    def dead_lettered_at(self) -> datetime | None:
        """When it came here (the last failure); what the age selectors measure."""
        return self.last_failure_at or self.first_failure_at

    @property
    def replay_count(self) -> int:
        return read_count(self.headers.get(HEADER_REPLAY_COUNT))

    def as_dict(self) -> dict:
        """JSON-able, for ``show --json``."""
        try:
            body, encoding = self.body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            body, encoding = self.body.hex(), "hex"
        when = {
            name: (value.isoformat() if value else None)
            for name, value in (("first_failure_at", self.first_failure_at), ("last_failure_at", self.last_failure_at))
        }
        return {
            "queue": self.queue,
            "position": self.position,
            "message_id": self.message_id,
            "content_type": self.properties.content_type,
            "event_type": self.event_type,
            "package_id": self.package_id,
            "routing_key": _text(self.headers.get(naming.HEADER_ROUTING_KEY)),
            "attempts": self.attempts,
            "error_class": self.error_class,
            "error_message": self.error_message,
            **when,
            "replay_count": self.replay_count,
            "headers": {key: _jsonable(value) for key, value in self.headers.items()},
            "body": body,
            "body_encoding": encoding,
            "body_bytes": len(self.body),
        }


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


@dataclass(frozen=True)
class Selector:
    """Which dead letters an operation takes; an empty selector takes all of them."""

    event_type: str | None = None
    error_class: str | None = None
    package_id: str | None = None
    older_than: timedelta | None = None
    newer_than: timedelta | None = None

    def matches(self, letter: DeadLetter, now: datetime) -> bool:
        if self.event_type is not None and letter.event_type != self.event_type:
            return False
        if self.error_class is not None and letter.error_class != self.error_class:
            return False
        if self.package_id is not None and letter.package_id != self.package_id:
            return False
        if self.older_than is not None or self.newer_than is not None:
            at = letter.dead_lettered_at
            if at is None:  # no age known: an age selector cannot vouch for it
                return False
            if self.older_than is not None and now - at < self.older_than:
                return False
            if self.newer_than is not None and now - at > self.newer_than:
                return False
        return True


def _own_headers_are_ours(letter: DeadLetter) -> bool:
    """False for a message the broker dead-lettered itself (a quorum queue's delivery limit)
    as it came from upstream: its ``x-oms-`` headers, if any, are someone else's. The newest
    ``x-death`` entry names the exchange it was published to; the services' own dead-letter
    copies carry no ``x-death``."""
    deaths = letter.headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return _text(deaths[0].get("exchange")) == naming.RETRY_EXCHANGE
    return True


def replay_headers(letter: DeadLetter, now: datetime) -> dict:
    """The dead letter's headers for a fresh start: no retry count, the last failure kept for audit.

    A replay goes through ``oms.retry``, where the services trust ``x-oms-`` headers: a
    message the broker dead-lettered straight from upstream loses any it came with."""
    kept = letter.headers if _own_headers_are_ours(letter) else without_own(letter.headers)
    headers = {key: value for key, value in kept.items() if key not in _RESET_HEADERS}
    headers.update(
        {
            naming.HEADER_REPLAYED_FROM: letter.queue,
            HEADER_PREVIOUS_ERROR_CLASS: letter.error_class or "",
            HEADER_PREVIOUS_ERROR_MESSAGE: letter.error_message or "",
            HEADER_PREVIOUS_ATTEMPTS: letter.attempts,
            HEADER_REPLAY_COUNT: letter.replay_count + 1,
            HEADER_REPLAYED_AT: now.isoformat(),
        }
    )
    for name, value in (
        (HEADER_PREVIOUS_FIRST_FAILURE, letter.first_failure_at),
        (HEADER_PREVIOUS_LAST_FAILURE, letter.last_failure_at),
    ):
        if value is not None:
            headers[name] = value.isoformat()
    return headers
