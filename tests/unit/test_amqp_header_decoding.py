"""A header py-amqp cannot decode costs that header, not the connection (shared/amqp_io.py)."""

from __future__ import annotations

import struct

from amqp import serialization
from amqp.spec import Basic

import shared.amqp_io  # noqa: F401  (installs the decoder)
from shared.amqp_io import UNDECODABLE_HEADERS


def _item(name: bytes, code: bytes, payload: bytes) -> bytes:
    return bytes([len(name)]) + name + code + payload


def _properties(*items: bytes, content_type: bytes = b"application/json", message_id: bytes = b"m-1") -> bytes:
    table = b"".join(items)
    flags = 0x8000 | 0x2000 | 0x0080
    return (
        struct.pack(">H", flags)
        + bytes([len(content_type)])
        + content_type
        + struct.pack(">I", len(table))
        + table
        + bytes([len(message_id)])
        + message_id
    )


def _decode(buf: bytes) -> dict:
    properties, _end = serialization.PROPERTY_CLASSES[Basic.CLASS_ID](buf, 0)
    return properties


def test_a_timestamp_past_year_9999_is_dropped_and_the_other_headers_and_properties_are_kept():
    buf = _properties(
        _item(b"trace", b"S", struct.pack(">I", 3) + b"abc"),
        _item(b"sent-at", b"T", struct.pack(">Q", 2**64 - 1)),
        _item(b"count", b"I", struct.pack(">i", 7)),
    )
    properties = _decode(buf)
    assert properties["application_headers"] == {"trace": "abc", "count": 7}
    assert properties["content_type"] == "application/json" and properties["message_id"] == "m-1"
    assert "'sent-at'" in properties[UNDECODABLE_HEADERS]


def test_an_array_nested_deeper_than_the_recursion_limit_is_dropped():
    nested = b"V"
    for _ in range(5000):
        nested = b"A" + struct.pack(">I", len(nested)) + nested
    properties = _decode(_properties(_item(b"deep", nested[:1], nested[1:]), _item(b"ok", b"t", b"\x01")))
    assert properties["application_headers"] == {"ok": True}
    assert "'deep'" in properties[UNDECODABLE_HEADERS]


def test_readable_headers_are_decoded_as_py_amqp_always_did():
    properties = _decode(_properties(_item(b"ok", b"t", b"\x01")))
    assert properties["application_headers"] == {"ok": True}
    assert UNDECODABLE_HEADERS not in properties
