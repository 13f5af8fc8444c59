"""W3C Trace Context (``traceparent``, ``tracestate``) as untrusted input, bounded.

An event carries its trace context as the CloudEvents distributed-tracing extension
attributes (``traceparent``, ``tracestate``; ``ce-traceparent`` in binary mode) or as the
AMQP header of the same name. Both are the sender's text: a value that is not what W3C
Trace Context says is dropped, never refused. A trace is a help for an operator, so a
malformed one must not cost an event (no dead letter, no error), and must not travel on.

- ``traceparent``: ``version-traceid-parentid-flags`` in lower-case hex; version ``00`` is
  exactly 55 characters; a later version (not ``ff``) is read by its first four fields, as
  the specification says, and carried on as version ``00``. The trace id and parent id
  must not be all zeros. At most :data:`MAX_TRACEPARENT` characters are looked at.
- ``tracestate``: at most :data:`MAX_TRACESTATE` characters and 32 list members, each
  ``key=value`` by the specification's grammar; anything else drops the whole header (the
  ``traceparent`` stays). Without a valid ``traceparent`` it is dropped too.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

#: A traceparent longer than this is not read at all (version 00 is 55 characters).
MAX_TRACEPARENT = 512
#: W3C asks vendors to propagate at least 512 characters of tracestate; more is dropped.
MAX_TRACESTATE = 512
MAX_TRACESTATE_MEMBERS = 32

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_PARENT = "0" * 16
# W3C Trace Context §3.3.1: simple-key or tenant@system keys; values of printable ASCII
# without ',' and '=' (and not ending in a space).
_MEMBER = re.compile(
    r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)


def valid_traceparent(value: Any) -> str | None:
    """The traceparent as it is carried on (version 00), or None for anything that is not one."""
    if not isinstance(value, str) or len(value) > MAX_TRACEPARENT:
        return None
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    if version == "00":
        return value if len(value) == 55 else None
    if len(value) > 55 and value[55] != "-":
        return None
    return f"00-{trace_id}-{parent_id}-{flags}"


def valid_tracestate(value: Any) -> str | None:
    """The tracestate as it came (empty members and spaces around them dropped), or None."""
    if not isinstance(value, str) or len(value) > MAX_TRACESTATE:
        return None
    members = [member.strip(" \t") for member in value.split(",")]
    members = [member for member in members if member]
    if not members or len(members) > MAX_TRACESTATE_MEMBERS:
        return None
    if any(_MEMBER.fullmatch(member) is None for member in members):
        return None
    return ",".join(members)


_SCHEMA = {
    "type": "string",
    "description": "W3C Trace Context (CloudEvents distributed tracing extension); "
    "a malformed value is ignored, not refused",
}
#: An envelope attribute: a valid traceparent, or None whatever else was sent.
TraceParent = Annotated[str | None, BeforeValidator(valid_traceparent), WithJsonSchema(_SCHEMA)]
#: An envelope attribute: a valid tracestate, or None whatever else was sent.
TraceState = Annotated[str | None, BeforeValidator(valid_tracestate), WithJsonSchema(_SCHEMA)]
