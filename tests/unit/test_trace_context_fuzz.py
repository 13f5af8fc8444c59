"""Trace context is untrusted input: any value, of any type, is carried on as a valid W3C
header or ignored, and never stops an event from being read (hypothesis)."""

from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import parse_event
from contracts.tracecontext import MAX_TRACESTATE, valid_traceparent, valid_tracestate

import contract_examples as examples

CARRIED_TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
HEX = "0123456789abcdefABCDEF"
# Near-misses of a real header as well as arbitrary values of every JSON type (JSON has no infinity).
near_traceparent = st.builds(
    lambda v, t, p, f, tail: f"{v}-{t}-{p}-{f}{tail}",
    st.text(HEX, min_size=1, max_size=3),
    st.text(HEX, min_size=30, max_size=34),
    st.text(HEX, min_size=14, max_size=18),
    st.text(HEX, min_size=1, max_size=3),
    st.text(max_size=20),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=600),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
odd = near_traceparent | json_values


@settings(max_examples=400, suppress_health_check=list(HealthCheck))
@given(odd)
def test_a_traceparent_of_any_value_is_carried_as_a_valid_header_or_ignored(value):
    carried = valid_traceparent(value)
    assert carried is None or CARRIED_TRACEPARENT.fullmatch(carried)


@settings(max_examples=400, suppress_health_check=list(HealthCheck))
@given(odd)
def test_a_tracestate_of_any_value_is_carried_bounded_or_ignored(value):
    carried = valid_tracestate(value)
    assert carried is None or (isinstance(carried, str) and 0 < len(carried) <= MAX_TRACESTATE)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(traceparent=odd, tracestate=odd)
def test_an_event_with_odd_trace_context_is_read_all_the_same(traceparent, tracestate):
    body = {**examples.example("PackagePacked"), "traceparent": traceparent, "tracestate": tracestate}
    event = parse_event(json.dumps(body).encode())
    assert event.traceparent == valid_traceparent(traceparent)
    assert event.tracestate is None or event.traceparent is not None
