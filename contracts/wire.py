"""Bytes from the wire to JSON values, in bounded time, memory and stack.

Everything here is written for hostile input: a body is at most ``MAX_BODY_BYTES``, must be
UTF-8, holds JSON only (no ``NaN``/``Infinity`` literals, which Python's decoder would
otherwise accept) and nests at most ``MAX_DEPTH`` arrays or objects deep.  The depth is
checked before the recursive decoder sees the text: in a handler thread, whose C stack can
be far smaller than the main thread's, a few thousand levels would crash the process
rather than raise.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_BODY_BYTES = 1024 * 1024
# The contract's events nest four levels (envelope, data, items, an item); 64 leaves room for
# any extension attribute or unknown field while staying far below any thread's stack.
MAX_DEPTH = 64


class EventRejected(ValueError):
    """A message that can never be applied; ``reason`` says why, for the dead letter."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# A JSON string, possibly unterminated (it then runs to the end of the body, so the scan stays
# linear whatever the quotes and backslashes). UTF-8 never puts a quote or a backslash byte
# inside a multi-byte character, so the bytes can be scanned as they are.
_STRING = re.compile(rb'"[^"\\]*(?:\\(?:.|\Z)[^"\\]*)*(?:"|\Z)', re.DOTALL)
# Brackets become parentheses, everything else goes: only the nesting is left.
_PARENTHESES = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def nests_deeper_than(body: bytes, limit: int) -> bool:
    """Whether arrays and objects in this JSON text nest more than ``limit`` levels deep.

    Never recursive, linear in the body's size (at most ``limit`` passes of ``bytes.replace``
    over its brackets).  A body with at most ``limit`` opening brackets, like every event the
    services see, is answered by two counts.  For text that is not JSON the answer may be
    too high, never too low: the decoder would reject it anyway.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", body).translate(_PARENTHESES, _NOT_BRACKETS)
    too_deep = b"(" * (limit + 1)
    height = 0  # each pass takes the innermost pairs away: the height of the tallest one
    while height <= limit:
        if too_deep in brackets:
            return True
        shorter = brackets.replace(b"()", b"")
        if len(shorter) == len(brackets):
            # Left: unmatched brackets, as ")))(((". Each "(" may hold what follows it.
            return height + brackets.count(b"(") > limit
        brackets, height = shorter, height + 1
    return True


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def check_size(body: bytes) -> None:
    if len(body) > MAX_BODY_BYTES:
        raise EventRejected(f"body of {len(body)} bytes exceeds the {MAX_BODY_BYTES}-byte limit")


def read_json(body: bytes) -> Any:
    """The JSON value of a body, or :class:`EventRejected` saying what is wrong with it."""
    check_size(body)
    body = bytes(body)  # a bytearray or memoryview too; the same object when it is bytes
    try:
        # utf-8-sig: a leading byte order mark is ignored, as RFC 8259 allows.
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EventRejected(f"body is not JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if nests_deeper_than(body, MAX_DEPTH):
        raise EventRejected(f"body is not JSON: arrays and objects nested more than {MAX_DEPTH} levels deep")
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        # ValueError: bad JSON, NaN or Infinity, integers too long to convert. RecursionError
        # cannot happen below MAX_DEPTH; kept so that no decoder error ever escapes as a crash.
        raise EventRejected(f"body is not JSON: {type(exc).__name__}: {exc}") from None
