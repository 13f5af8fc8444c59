"""Text from outside, made safe to show on a terminal: every control character written out.

A package id, a carrier's description or a dead letter's header can hold an escape
sequence that clears the screen, retitles the window, hides the rest of the line or
draws a fake one; a carriage return or a newline can forge a log line. Shown through
:func:`visible`, each such character reads as its escape (``\\x1b``, ``\\r``, ``\\u202e``)
and does nothing.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls (0x9b is a one-byte CSI), the line and paragraph
# separators, the bidirectional overrides and isolates, and lone surrogates (which a
# UTF-8 terminal cannot even be sent).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _written_out(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: str, keep: str = "") -> str:
    """``text`` with every control character written out as its escape, except those in ``keep``."""
    if keep:
        return _UNSAFE.sub(lambda m: m.group() if m.group() in keep else _written_out(m), text)
    return _UNSAFE.sub(_written_out, text)
