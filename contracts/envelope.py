"""CloudEvents 1.0 structured-JSON envelope and the one way bytes become an event."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.events import EVENT_MODELS
from contracts.ids import uuid4

MAX_BODY_BYTES = 1024 * 1024
ACCEPTED_CONTENT_TYPES = frozenset({"application/cloudevents+json", "application/json"})
CONTENT_TYPE = "application/cloudevents+json"


class EventRejected(ValueError):
    """A message that can never be applied; ``reason`` says why, for the dead letter."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class CloudEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: str = Field(pattern=r"^1\.0$")
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    time: datetime | None = None
    subject: str | None = None
    datacontenttype: str | None = None
    data: Any

    @classmethod
    def new(cls, type: str, source: str, data: BaseModel, subject: str | None = None) -> "CloudEvent":
        return cls(
            specversion="1.0",
            id=uuid4(),
            source=source,
            type=type,
            time=datetime.now(timezone.utc),
            subject=subject,
            datacontenttype="application/json",
            data=data,
        )

    def to_bytes(self) -> bytes:
        body = self.model_dump(mode="json", exclude_none=True)
        return json.dumps(body, separators=(",", ":")).encode()


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def parse_event(body: bytes, content_type: str | None = None) -> CloudEvent:
    """Bytes from the broker → an envelope whose ``data`` is the typed event model.

    Raises :class:`EventRejected` with a human-readable reason for anything the
    contract says to reject.
    """
    if content_type:
        base = content_type.split(";", 1)[0].strip().lower()
        if base not in ACCEPTED_CONTENT_TYPES:
            raise EventRejected(f"unsupported content type {content_type!r}")
    if len(body) > MAX_BODY_BYTES:
        raise EventRejected(f"body of {len(body)} bytes exceeds the {MAX_BODY_BYTES}-byte limit")
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError) as exc:
        # ValueError covers undecodable bytes, bad JSON and integers too long to convert;
        # RecursionError, nesting deeper than the decoder goes.
        raise EventRejected(f"body is not JSON: {type(exc).__name__}: {exc}") from None
    if not isinstance(raw, dict):
        raise EventRejected("body is not a JSON object")
    try:
        envelope = CloudEvent.model_validate(raw)
    except ValidationError as exc:
        raise EventRejected(f"invalid CloudEvents envelope: {_describe(exc)}") from None
    model = EVENT_MODELS.get(envelope.type)
    if model is None:
        raise EventRejected(f"unknown event type {envelope.type!r}")
    if not isinstance(envelope.data, dict):
        raise EventRejected(f"{envelope.type}: data is not a JSON object")
    try:
        data = model.model_validate(envelope.data)
    except ValidationError as exc:
        raise EventRejected(f"invalid {envelope.type} data: {_describe(exc)}") from None
    return envelope.model_copy(update={"data": data})
