"""W3C trace context end to end, and OpenTelemetry spans when the ``OTEL_*`` variables turn them on.

Two layers, each a handful of one-line hooks at the call sites:

- **Propagation, always.** An incoming event's ``traceparent``/``tracestate`` (validated and
  bounded by ``contracts/tracecontext.py``) is held while the event is handled
  (:func:`handling`), stamped on every event it causes (:func:`stamped`, in the outbox row:
  the stored envelope carries it), put on the AMQP headers of each published event
  (:func:`message_headers`) and on every carrier and Omnitron request made meanwhile
  (:func:`http_call`). With tracing off, or without the SDK, the context passes through
  unchanged, as W3C Trace Context asks of a participant that does not trace.
- **Spans, when on** (``shared/tracing_setup.py`` reads the ``OTEL_*`` variables and calls
  :func:`use`): ``process`` (consumer) and ``handle`` per delivery, ``create`` per event stored in the outbox, ``publish`` per event
  the relay sends, one client span per HTTP request. Each carries the event's id, type,
  source, package and shipment.

Off (the default), nothing of OpenTelemetry is imported; a message without trace context
costs a contextvar read or an attribute test per hook (docs/benchmarks.md, "Tracing off").
"""

from __future__ import annotations

import contextvars
import re
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Any, Callable
from urllib.parse import urlsplit

from contracts.tracecontext import valid_traceparent, valid_tracestate

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_BODY_TRACEPARENT = b'"traceparent":"'
_BODY_TRACESTATE = b'"tracestate":"'
_BODY_SHIPMENT = b'"shipment_id":"'

#: The trace context held while an event is handled: (traceparent, tracestate).
_carried: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar("oms_trace", default=None)
#: The span attributes of the event being handled, for the spans started under it.
_event_attributes: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "oms_trace_event", default=None
)

_NOTHING = nullcontext()


class _Tracing:
    """What is needed once tracing is on: the SDK's tracer and a few API names."""

    def __init__(self, provider: Any):
        from opentelemetry import context, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer = provider.get_tracer("oms-shipments")
        self.trace = trace
        self.context = context
        self.kind = SpanKind
        self.error = Status(StatusCode.ERROR)
        self.status = Status
        self.code = StatusCode
        self.propagator = TraceContextTextMapPropagator()

    def parent(self, traceparent: str | None, tracestate: str | None) -> Any:
        """The remote parent's context (an empty one for none): context is untrusted, already checked."""
        if traceparent is None:
            return self.context.Context()
        carrier = {TRACEPARENT: traceparent}
        if tracestate:
            carrier[TRACESTATE] = tracestate
        return self.propagator.extract(carrier)

    def inject(self, span: Any) -> tuple[str, str | None]:
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, self.trace.set_span_in_context(span))
        return carrier[TRACEPARENT], carrier.get(TRACESTATE) or None


_on: _Tracing | None = None


def enabled() -> bool:
    return _on is not None


def use(provider: Any | None) -> None:
    """Spans from this ``TracerProvider`` (tests pass one with an in-memory exporter); None: off."""
    global _on
    _on = None if provider is None else _Tracing(provider)


# ---- handling an event ----------------------------------------------------------------


def _attributes(event: Any) -> dict[str, Any]:
    data = event.data
    attributes = {
        "cloudevents.event_id": event.id,
        "cloudevents.event_type": event.type,
        "cloudevents.event_source": event.source,
        "messaging.message.id": event.id,
    }
    if event.subject:
        attributes["cloudevents.event_subject"] = event.subject
    for name in ("package_id", "shipment_id"):
        value = getattr(data, name, None)
        if isinstance(value, str):
            attributes[f"oms.{name}"] = value
    return attributes


class _Carrying:
    """Tracing off: the event's own trace context, held for what it causes."""

    __slots__ = ("_context", "_token")

    def __init__(self, context: tuple[str, str | None]):
        self._context = context

    def __enter__(self) -> None:
        self._token = _carried.set(self._context)

    def __exit__(self, *exc_info: object) -> None:
        _carried.reset(self._token)


class _Handling:
    """Tracing on: a consumer ``process`` span under the event's parent, a ``handle`` span in it."""

    def __init__(self, on: _Tracing, event: Any, routing_key: str):
        self._on = on
        self._event = event
        self._routing_key = routing_key

    def __enter__(self) -> None:
        import structlog

        on, event = self._on, self._event
        attributes = _attributes(event)
        self._process = on.tracer.start_span(
            f"process {self._routing_key}",
            context=on.parent(event.traceparent, event.tracestate),
            kind=on.kind.CONSUMER,
            attributes={
                **attributes,
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "process",
                "messaging.destination.name": "oms.events",
                "messaging.rabbitmq.destination.routing_key": self._routing_key,
            },
        )
        self._handle = on.tracer.start_span(
            f"handle {event.type}", context=on.trace.set_span_in_context(self._process), attributes=attributes
        )
        context = self._handle.get_span_context()
        self._tokens = (
            on.context.attach(on.trace.set_span_in_context(self._handle)),
            _carried.set(on.inject(self._handle)),
            _event_attributes.set(attributes),
        )
        self._logged = structlog.contextvars.bound_contextvars(
            trace_id=format(context.trace_id, "032x"), span_id=format(context.span_id, "016x")
        )
        self._logged.__enter__()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._logged.__exit__(kind, error, traceback)
        attached, carried, attributes = self._tokens
        _event_attributes.reset(attributes)
        _carried.reset(carried)
        self._on.context.detach(attached)
        for span in (self._handle, self._process):
            if error is not None:
                span.record_exception(error)
                span.set_status(self._on.status(self._on.code.ERROR, f"{type(error).__name__}: {error}"[:500]))
            span.end()


def handling(event: Any, routing_key: str) -> AbstractContextManager[None]:
    """Around handling one event: its trace context held (and, when on, its spans)."""
    if _on is None:
        if event.traceparent is None:
            return _NOTHING
        return _Carrying((event.traceparent, event.tracestate))
    return _Handling(_on, event, routing_key)


# ---- events it causes -----------------------------------------------------------------


def stamped(envelope: Any, routing_key: str | None = None) -> Any:
    """The envelope with the trace context it travels in: the handled event's (off), or its own
    ``create`` span's, a child of the current span (on). Unchanged when there is none."""
    if _on is None:
        carried = _carried.get()
        if carried is None:
            return envelope
        traceparent, tracestate = carried
    else:
        on = _on
        attributes = {
            **(_event_attributes.get() or {}),
            **_attributes(envelope),
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "create",
            "messaging.destination.name": "oms.events",
        }
        if routing_key:
            attributes["messaging.rabbitmq.destination.routing_key"] = routing_key
        span = on.tracer.start_span(
            f"create {routing_key or envelope.type}", kind=on.kind.PRODUCER, attributes=attributes
        )
        span.end()
        traceparent, tracestate = on.inject(span)
    return envelope.model_copy(update={"traceparent": traceparent, "tracestate": tracestate})


def _string_after(body: bytes, key: bytes, limit: int) -> str | None:
    """A JSON string value after ``key`` (our own bodies: no escapes in these), bounded."""
    at = body.find(key)
    if at < 0:
        return None
    start = at + len(key)
    end = body.find(b'"', start, start + limit + 1)
    if end < 0:
        return None
    try:
        return body[start:end].decode("ascii")
    except UnicodeDecodeError:
        return None


def stored_context(body: bytes) -> tuple[str, str | None] | None:
    """The trace context of a stored event (its envelope's attributes), read without a parse."""
    traceparent = valid_traceparent(_string_after(body, _BODY_TRACEPARENT, 512))
    if traceparent is None:
        return None
    return traceparent, valid_tracestate(_string_after(body, _BODY_TRACESTATE, 512))


def message_headers(body: bytes) -> dict[str, str] | None:
    """AMQP headers for a stored event: its trace context, as W3C Trace Context for AMQP names them.

    The body is our own, its attributes checked when it was stored: read, not checked again."""
    at = body.find(_BODY_TRACEPARENT)
    if at < 0:
        return None
    start = at + len(_BODY_TRACEPARENT)
    traceparent = body[start : start + 55]
    if len(traceparent) != 55 or body[start + 55 : start + 56] != b'"':
        return None
    headers = {TRACEPARENT: traceparent.decode("ascii", "replace")}
    tracestate = _string_after(body, _BODY_TRACESTATE, 512)
    if tracestate:
        headers[TRACESTATE] = tracestate
    return headers


def traced_publish(publish: Callable[[list[Any]], Any], messages: list[Any]) -> Any:
    """``publish(messages)`` (the relay's batch of ``Outgoing``); when on, a ``publish`` span per
    message, a child of its stored context, ended with the broker's answer."""
    if _on is None:
        return publish(messages)
    on = _on
    spans = []
    for message in messages:
        context = stored_context(message.body)
        attributes = {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "send",
            "messaging.destination.name": "oms.events",
            "messaging.rabbitmq.destination.routing_key": message.routing_key,
            "messaging.message.id": message.message_id,
            "cloudevents.event_id": message.message_id,
            "cloudevents.event_type": message.event_type,
        }
        shipment = _string_after(message.body, _BODY_SHIPMENT, 255)
        if shipment:
            attributes["oms.shipment_id"] = shipment
        parent = on.parent(*context) if context else on.context.Context()
        spans.append(
            on.tracer.start_span(
                f"publish {message.routing_key}", context=parent, kind=on.kind.CLIENT, attributes=attributes
            )
        )
    try:
        taken = publish(messages)
    except BaseException as error:
        for span in spans:
            span.record_exception(error)
            span.set_status(on.error)
            span.end()
        raise
    returned = getattr(taken, "returned", {}) or {}
    for index, (span, ok) in enumerate(zip(spans, taken, strict=False)):
        if not ok:
            span.set_status(on.status(on.code.ERROR, "returned: no queue bound" if index in returned else "nacked"))
        span.end()
    return taken


# ---- HTTP calls ------------------------------------------------------------------------

_ID_SEGMENT = re.compile(r"/(?:[0-9]+|[0-9A-Fa-f-]{32,36})(?=/|$)")


class _NoAnswer:
    __slots__ = ()

    def __enter__(self) -> "_NoAnswer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def answered(self, status: int) -> None:
        return None


_NO_SPAN = _NoAnswer()


class _HttpSpan:
    def __init__(self, on: _Tracing, method: str, url: str, request: dict[str, Any]):
        self._on = on
        parts = urlsplit(url)
        template = _ID_SEGMENT.sub("/{id}", parts.path) or "/"
        attributes = {
            **(_event_attributes.get() or {}),
            "http.request.method": method,
            "url.full": parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1], query="").geturl(),
            "url.template": template,
            "server.address": parts.hostname or "",
        }
        if parts.port:
            attributes["server.port"] = parts.port
        self._span = on.tracer.start_span(f"{method} {template}", kind=on.kind.CLIENT, attributes=attributes)
        traceparent, tracestate = on.inject(self._span)
        request["headers"] = _with_context(request.get("headers"), traceparent, tracestate)

    def __enter__(self) -> "_HttpSpan":
        return self

    def answered(self, status: int) -> None:
        self._span.set_attribute("http.response.status_code", status)
        if status >= 400:
            self._span.set_status(self._on.status(self._on.code.ERROR, f"HTTP {status}"))

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if error is not None:
            self._span.record_exception(error)
            self._span.set_attribute("error.type", type(error).__name__)
            self._span.set_status(self._on.status(self._on.code.ERROR, type(error).__name__))
        self._span.end()


def _with_context(headers: Any, traceparent: str, tracestate: str | None) -> dict[str, Any]:
    merged = dict(headers or {})
    merged[TRACEPARENT] = traceparent
    if tracestate:
        merged[TRACESTATE] = tracestate
    else:
        merged.pop(TRACESTATE, None)
    return merged


def http_call(method: str, url: str, request: dict[str, Any]) -> "_NoAnswer | _HttpSpan":
    """Around one HTTP request: ``request["headers"]`` (the request's keyword arguments) is
    replaced by a copy carrying the trace context; when on, a client span, whose
    ``answered(status)`` records the answer."""
    if _on is None:
        carried = _carried.get()
        if carried is not None:
            request["headers"] = _with_context(request.get("headers"), *carried)
        return _NO_SPAN
    return _HttpSpan(_on, method, url, request)
