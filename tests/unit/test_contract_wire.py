"""The bounded JSON reader: deep nesting, huge bodies and non-JSON literals are refused with a
reason, in bounded time, on any thread's stack."""

from __future__ import annotations

import json
import json.scanner
import subprocess
import sys
import textwrap
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import EventRejected, parse_event
from contracts.wire import MAX_BODY_BYTES, MAX_DEPTH, nests_deeper_than, read_json

import contract_examples as examples


def _nested(depth: int, opener: str = "[", closer: str = "]", inner: str = "1") -> str:
    return opener * depth + inner + closer * depth


def _in_unknown_field(value_json: str) -> bytes:
    """The contract's PackageShipped carrying ``value_json`` in a field nobody reads."""
    body = examples.to_bytes(examples.example("PackageShipped"))
    return body[:-2] + b', "extension": ' + value_json.encode() + b"}}"


def test_the_allowed_depth_counts_the_envelope_and_data_levels():
    # envelope {, data {, extension: MAX_DEPTH - 2 arrays.
    assert parse_event(_in_unknown_field(_nested(MAX_DEPTH - 2))).type == "PackageShipped"
    with pytest.raises(EventRejected, match=f"nested more than {MAX_DEPTH} levels deep"):
        parse_event(_in_unknown_field(_nested(MAX_DEPTH - 1)))


@pytest.mark.parametrize("shape", ["arrays", "objects", "mixed", "unclosed", "after a string with brackets"])
def test_a_body_nested_hundreds_of_thousands_deep_is_refused_with_the_reason(shape):
    depth = 150_000  # within the 1 MiB limit for every shape
    text = {
        "arrays": _nested(depth),
        "objects": '{"a":' * depth + "1" + "}" * depth,
        "mixed": '[{"":' * (depth // 2) + "1" + "}]" * (depth // 2),
        "unclosed": "[" * depth,
        "after a string with brackets": '["]]]]' + "]" * 1000 + '",' + _nested(depth) + "]",
    }[shape]

    with pytest.raises(EventRejected) as rejected:
        read_json(text.encode())

    assert rejected.value.reason == f"body is not JSON: arrays and objects nested more than {MAX_DEPTH} levels deep"


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = json.dumps({"note": "[" * 100_000, "other": '{{{\\"[[[' * 1000, "list": [[["ok"]]]})

    assert read_json(text.encode())["list"] == [[["ok"]]]


_HOSTILE_BODIES = {
    "deep arrays": b"[" * 500_000 + b"]" * 500_000,
    "deep unclosed": b"[" * (MAX_BODY_BYTES - 1),
    "wide and shallow": b"[" + b"[]," * 340_000 + b"[]]",
    "many tall siblings": b"[" + b",".join([b"[" * 60 + b"]" * 60] * 8_000) + b"]",
    "escaped quotes": b'"' + b'\\"' * 500_000,
    "backslashes": b'["' + b"\\" * (MAX_BODY_BYTES - 3),
    "quotes": b'"' * MAX_BODY_BYTES,
    "one huge string": b'{"a": "' + b"x" * (MAX_BODY_BYTES - 10) + b'"}',
}


@pytest.mark.parametrize("name", list(_HOSTILE_BODIES))
def test_hostile_bodies_of_a_mebibyte_are_read_or_refused_in_bounded_time(name):
    body = _HOSTILE_BODIES[name]
    assert len(body) <= MAX_BODY_BYTES

    started = time.perf_counter()
    try:
        read_json(body)
    except EventRejected as rejected:
        assert rejected.reason.startswith("body is not JSON")
    elapsed = time.perf_counter() - started

    # About a tenth of a second on an idle machine; generous for a loaded one.
    assert elapsed < 10, f"{name} took {elapsed:.1f}s"


def test_a_body_over_the_limit_is_refused_before_it_is_decoded():
    with pytest.raises(EventRejected, match=f"{MAX_BODY_BYTES + 1} bytes exceeds the {MAX_BODY_BYTES}-byte limit"):
        read_json(b"[" * (MAX_BODY_BYTES + 1))


@pytest.mark.parametrize(
    "body, says",
    [
        (b'{"a": "\xc3"}', "not UTF-8 (invalid continuation byte at byte 7)"),
        (b'{"a": "\xed\xa0\x80"}', "not UTF-8"),  # a surrogate encoded in UTF-8
        ('{"a": 1}'.encode("utf-16"), "not UTF-8"),
        (b'{"a": "\x00"}', "Invalid control character"),
        (b'{"a": 1} {"b": 2}', "Extra data"),
    ],
)
def test_bodies_that_are_not_utf_8_json_are_refused_with_what_is_wrong(body, says):
    with pytest.raises(EventRejected) as rejected:
        read_json(body)

    assert rejected.value.reason.startswith("body is not JSON")
    assert says in rejected.value.reason


def test_a_leading_byte_order_mark_is_ignored_as_rfc_8259_allows():
    assert read_json(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


# The C stack of a handler thread can be much smaller than the main thread's (128 KiB is
# musl's default). Before the depth check, json.loads crashed such a thread's process on a
# deep body instead of raising; a crash here is a non-zero exit of the child process.
_SMALL_STACK_SCRIPT = textwrap.dedent("""
    import sys, threading
    sys.path[:0] = {paths!r}
    from contracts import EventRejected, parse_event
    from contracts.envelope import peek_data
    bodies = [b"[" * 300000 + b"]" * 300000, b'{{"a":' * 300000 + b"1" + b"}}" * 300000,
              b'{{"specversion": "1.0", "data": ' + b"[" * 300000 + b"]" * 300000 + b"}}"]
    outcomes = []
    def run():
        for body in bodies:
            for read in (lambda: parse_event(body), lambda: peek_data(body)):
                try:
                    read()
                except EventRejected as rejected:
                    outcomes.append(rejected.reason)
    threading.stack_size(128 * 1024)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    print(len(outcomes))
""")


def test_deep_bodies_are_refused_on_a_thread_with_a_128_kib_stack_without_crashing_the_process():
    script = _SMALL_STACK_SCRIPT.format(paths=[p for p in sys.path if p])
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, f"the process died: {result.returncode} {result.stderr[-2000:]}"
    assert result.stdout.strip() == "6"


# ---- the depth check against the decoder's own idea of depth ------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:', max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"a', max_size=4), children, max_size=3)
    ),
    max_leaves=60,
)


def _depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_JSON, limit=st.integers(0, 12))
def test_the_depth_check_agrees_with_the_real_depth_of_any_json_value(value, limit):
    text = json.dumps(value).encode()

    assert nests_deeper_than(text, limit) == (_depth(value) > limit)


def _decoder_depth(text: str) -> int:
    """How deep Python's decoder recurses on this text before it succeeds or fails: its pure
    Python scanner, with the array and object parsers counting."""
    decoder = json.JSONDecoder()
    depth = {"now": 0, "deepest": 0}

    def counting(parse):
        def parse_counted(*args):
            depth["now"] += 1
            depth["deepest"] = max(depth["deepest"], depth["now"])
            try:
                return parse(*args)
            finally:
                depth["now"] -= 1

        return parse_counted

    decoder.parse_array = counting(decoder.parse_array)
    decoder.parse_object = counting(decoder.parse_object)
    decoder.scan_once = json.scanner.py_make_scanner(decoder)
    try:
        decoder.decode(text)
    except ValueError:
        pass
    return depth["deepest"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.text(alphabet='[]{}"\\a,:1 ', max_size=80) | _JSON.map(json.dumps).map(lambda t: t[: len(t) // 2]),
    limit=st.integers(0, 6),
)
def test_on_text_that_is_not_json_the_depth_check_never_says_less_than_the_decoder_reaches(text, limit):
    if not nests_deeper_than(text.encode(), limit):
        assert _decoder_depth(text) <= limit
