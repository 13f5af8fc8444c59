"""CloudEvents 1.0 in both content modes of the RabbitMQ binding, and the one way a message
becomes an event (CONTRACT.md §2).

- structured: the whole event is the JSON body (content type ``application/cloudevents+json``,
  ``application/json`` or none); ``ce-`` headers are ignored;
- binary: a ``ce-specversion`` header and a content type that does not start with
  ``application/cloudevents``; the attributes are the ``ce-`` headers (AMQP strings), the
  content type is ``datacontenttype`` and the body is the ``data`` alone.

Both modes then pass the same checks: the envelope, the event type, its data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import ErrorDetails

from contracts.events import EVENT_MODELS
from contracts.ids import uuid4
from contracts.tracecontext import TraceParent, TraceState, valid_traceparent
from contracts.values import NO_NUL_PATTERN, Name, Text, Time
from contracts.wire import MAX_BODY_BYTES, EventRejected, check_size, read_json

__all__ = ["CONTENT_TYPE", "MAX_BODY_BYTES", "CloudEvent", "EventRejected", "parse_event", "peek_data"]

CONTENT_TYPE = "application/cloudevents+json"
STRUCTURED_CONTENT_TYPES = frozenset({CONTENT_TYPE, "application/json"})
DATA_CONTENT_TYPES = frozenset({"application/json"})
BATCH_CONTENT_TYPE = "application/cloudevents-batch"
CE_PREFIX = "ce-"
# Attributes a binary message carries elsewhere: the data is the body, its content type the
# AMQP content type. A header of that name is not taken for them.
_NOT_FROM_HEADERS = frozenset({"data", "data_base64", "datacontenttype"})
# Trace context is a help, not part of the event: in any other type than a string it is
# ignored, never refused (contracts/tracecontext.py).
_TRACE_ATTRIBUTES = frozenset({"traceparent", "tracestate"})
#: The AMQP header an upstream may carry its trace context in instead (W3C Trace Context for AMQP).
TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"


class CloudEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: str = Field(pattern=r"^1\.0$")
    id: Name
    source: Name
    type: Name
    time: Time | None = None
    subject: Text | None = None
    datacontenttype: Text | None = None
    # The CloudEvents distributed-tracing extension: untrusted, a malformed value is None.
    # Before ``data``, so that a stored event's trace context is found without a parse (shared/tracing.py).
    traceparent: TraceParent = None
    tracestate: TraceState = None
    data: Any

    @field_validator("tracestate", mode="after")
    @classmethod
    def _tracestate_needs_its_traceparent(cls, value: str | None, info: ValidationInfo) -> str | None:
        return value if info.data.get("traceparent") is not None else None

    @classmethod
    def new(
        cls,
        type: str,
        source: str,
        data: BaseModel,
        subject: str | None = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
    ) -> "CloudEvent":
        return cls(
            specversion="1.0",
            id=uuid4(),
            source=source,
            type=type,
            time=datetime.now(timezone.utc),
            subject=subject,
            datacontenttype="application/json",
            traceparent=traceparent,
            tracestate=tracestate,
            data=data,
        )

    def to_bytes(self) -> bytes:
        body = self.model_dump(mode="json", exclude_none=True)
        return json.dumps(body, separators=(",", ":")).encode()


def _message(item: ErrorDetails) -> str:
    """pydantic's message, in the contract's words where pydantic's would puzzle an operator."""
    if item["type"] == "string_unicode":
        return "text holds a lone surrogate (not Unicode text)"
    if item["type"] == "string_pattern_mismatch" and item.get("ctx", {}).get("pattern") == NO_NUL_PATTERN:
        return "text holds U+0000"
    return item["msg"]


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {_message(item)}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _header(attribute: str) -> str:
    """A ``ce-`` header's name for a reason: as it is when it is a CloudEvents attribute name
    (lower-case letters and digits), else quoted and cut, since it is a stranger's text."""
    name = CE_PREFIX + attribute
    if attribute.isascii() and attribute.isalnum() and len(attribute) <= 20:
        return name
    return repr(name[:64])


def _ce_headers(headers: Mapping[Any, Any] | None) -> dict[str, Any]:
    """The ``ce-`` headers by attribute name (header names compared without case)."""
    found: dict[str, Any] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not name.lower().startswith(CE_PREFIX):
            continue  # a name that is not text (undecodable bytes) cannot be an attribute's
        attribute = name[len(CE_PREFIX) :].lower()
        if attribute in found:
            raise EventRejected(f"binary-mode headers name the attribute {attribute[:64]!r} twice")
        found[attribute] = value
    return found


def _binary_attributes(ce_headers: dict[str, Any], content_type: str | None, body: bytes) -> dict[str, Any]:
    media_type = _media_type(content_type)
    if media_type and media_type not in DATA_CONTENT_TYPES:
        raise EventRejected(f"binary-mode data content type {content_type!r} is not JSON (application/json)")
    attributes: dict[str, Any] = {}
    for attribute, value in ce_headers.items():
        if attribute in _NOT_FROM_HEADERS or (attribute in _TRACE_ATTRIBUTES and not isinstance(value, str)):
            continue
        if not isinstance(value, str):
            raise EventRejected(f"header {_header(attribute)} is an AMQP {type(value).__name__}, not a string")
        attributes[attribute] = value
    attributes["data"] = read_json(body)
    if content_type:
        attributes["datacontenttype"] = content_type
    return attributes


def _structured_attributes(content_type: str | None, body: bytes) -> dict[str, Any]:
    if content_type and _media_type(content_type) not in STRUCTURED_CONTENT_TYPES:
        raise EventRejected(f"unsupported content type {content_type!r}")
    raw = read_json(body)
    if not isinstance(raw, dict):
        raise EventRejected("body is not a JSON object")
    return raw


def _attributes(body: bytes, content_type: str | None, headers: Mapping[Any, Any] | None) -> dict[str, Any]:
    media_type = _media_type(content_type)
    if media_type.startswith(BATCH_CONTENT_TYPE):
        raise EventRejected(f"batched content mode ({content_type!r}) is not accepted: one event per message")
    check_size(body)  # before any header is looked at
    ce_headers = _ce_headers(headers)
    if "specversion" in ce_headers and not media_type.startswith("application/cloudevents"):
        return _binary_attributes(ce_headers, content_type, body)
    return _structured_attributes(content_type, body)


def peek_data(body: bytes, content_type: str | None = None, headers: Mapping[Any, Any] | None = None) -> Any:
    """The event's ``data`` as a JSON value, unchecked, in either content mode: for routing a
    message (an ordering key) before it is parsed. Raises :class:`EventRejected` like
    :func:`parse_event` for bodies it cannot read."""
    return _attributes(body, content_type, headers).get("data")


def parse_event(body: bytes, content_type: str | None = None, headers: Mapping[Any, Any] | None = None) -> CloudEvent:
    """A broker message (body, AMQP content type, headers) → an envelope whose ``data`` is the
    typed event model, in either content mode.

    Raises :class:`EventRejected` with a reason naming what is wrong for anything the
    contract says to reject.
    """
    attributes = _attributes(body, content_type, headers)
    if headers and TRACEPARENT_HEADER in headers and valid_traceparent(attributes.get("traceparent")) is None:
        # No (valid) trace context among the attributes: the AMQP header's, if it is valid.
        attributes["traceparent"] = headers.get(TRACEPARENT_HEADER)
        attributes["tracestate"] = headers.get(TRACESTATE_HEADER)
    try:
        envelope = CloudEvent.model_validate(attributes)
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
