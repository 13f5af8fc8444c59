"""Answers a hostile peer gives: each way a carrier's or Omnitron's answer can be wrong (CONTRACT.md §4).

Each function returns a :class:`~services.standins.RawAnswer` for
:meth:`StandInServer.misbehave`: bytes on the socket, so an answer can be broken below
HTTP (framing, headers, timing) as well as in its JSON. ``CARRIER_ANSWERS`` names every
one that makes a carrier's query answer unusable, for tests that go through them all.
"""

from __future__ import annotations

import json
from typing import Callable

from services.standins import RawAnswer

MIB = 1 << 20


def http_answer(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None, name: str = "answer"
) -> RawAnswer:
    """A well-framed answer (``Content-Length``) with any body and headers."""
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return RawAnswer((head.encode("latin-1") + b"\r\n" + body,), name=name)


def json_answer(document, status: int = 200, name: str = "json") -> RawAnswer:
    return http_answer(json.dumps(document).encode(), status, name=name)


def query_body(shipment_id: str, status: str = "SHIPPING", **changes) -> dict:
    return {
        "shipmentId": shipment_id,
        "trackingNumber": "HOSTILE1",
        "status": status,
        "statusDate": "2026-11-27T12:00:00Z",
        "description": "In transit",
        **changes,
    }


# ---- wrong in the JSON ------------------------------------------------------------------


def about_another_shipment(shipment_id: str) -> RawAnswer:
    return json_answer(query_body("someone-else-" + shipment_id, "DELIVERED"), name="another shipmentId")


def status_too_long(shipment_id: str) -> RawAnswer:
    return json_answer(query_body(shipment_id, "DELIVERED" + "X" * 60), name="status over 64")


def text_too_long(shipment_id: str) -> RawAnswer:
    return json_answer(query_body(shipment_id, "DELIVERED", description="x" * 2001), name="text over 2000")


def text_with_nul(shipment_id: str) -> RawAnswer:
    return json_answer(query_body(shipment_id, "DELIVERED\u0000"), name="NUL in status")


def lone_surrogate(shipment_id: str) -> RawAnswer:
    # json.dumps writes the escape "\ud800", which every JSON parser reads as a lone surrogate.
    return json_answer(query_body(shipment_id, "DELIVERED", description="\ud800"), name="lone surrogate")


def not_json(shipment_id: str) -> RawAnswer:
    return http_answer(b"<html>Bad gateway, but 200</html>", name="not JSON")


def not_an_object(shipment_id: str) -> RawAnswer:
    return json_answer([query_body(shipment_id)], name="JSON array")


def status_a_number(shipment_id: str) -> RawAnswer:
    return json_answer(query_body(shipment_id, 550), name="status a number")


def deeply_nested(shipment_id: str) -> RawAnswer:
    return http_answer(b"[" * 200_000 + b"]" * 200_000, name="deep nesting")


def unknown_status(shipment_id: str) -> RawAnswer:
    """Readable, but a status the table does not know: kept as it is, with a warning."""
    return json_answer(query_body(shipment_id, "TELEPORTED"), name="unknown status")


def history_events_not_a_list(shipment_id: str) -> RawAnswer:
    return json_answer({"shipmentId": shipment_id, "events": {"status": "DELIVERED"}}, name="events not a list")


# ---- wrong below the JSON ---------------------------------------------------------------


def interim(shipment_id: str) -> RawAnswer:
    final = json_answer(query_body(shipment_id, "DELIVERED")).parts[0]
    return RawAnswer((b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + final,), name="interim 1xx")


def oversized(shipment_id: str) -> RawAnswer:
    body = json.dumps(query_body(shipment_id, "DELIVERED", description="x" * MIB)).encode()
    return http_answer(body, name="body over 1 MiB")


def oversized_chunked(shipment_id: str) -> RawAnswer:
    chunk = b"x" * 65536
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    return RawAnswer((head + (b"10000\r\n" + chunk + b"\r\n") * 17 + b"0\r\n\r\n",), name="chunked over 1 MiB")


def drip(shipment_id: str, seconds: float = 60.0) -> RawAnswer:
    """The right answer, one byte at a time, spread over ``seconds``."""
    whole = json_answer(query_body(shipment_id, "DELIVERED")).parts[0]
    return RawAnswer(tuple(whole[i : i + 1] for i in range(len(whole))), pause_s=seconds / len(whole), name="drip")


def huge_header(shipment_id: str) -> RawAnswer:
    return http_answer(
        json.dumps(query_body(shipment_id, "DELIVERED")).encode(), headers={"X-Big": "a" * 70_000}, name="huge header"
    )


def too_many_headers(shipment_id: str) -> RawAnswer:
    return http_answer(
        json.dumps(query_body(shipment_id, "DELIVERED")).encode(),
        headers={f"X-H{n}": "1" for n in range(500)},
        name="too many headers",
    )


def control_character_in_header(shipment_id: str) -> RawAnswer:
    return http_answer(
        json.dumps(query_body(shipment_id, "DELIVERED")).encode(),
        headers={"X-Bad": "a\x01b"},
        name="control character in a header",
    )


def bad_chunk_size(shipment_id: str) -> RawAnswer:
    body = json.dumps(query_body(shipment_id, "DELIVERED")).encode()
    return RawAnswer(
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + body + b"\r\n0\r\n\r\n",),
        name="bad chunk size",
    )


def content_length_beyond_the_body(shipment_id: str) -> RawAnswer:
    body = json.dumps(query_body(shipment_id, "DELIVERED")).encode()
    return RawAnswer(
        (f"HTTP/1.1 200 OK\r\nContent-Length: {len(body) + 100}\r\n\r\n".encode() + body,),
        name="Content-Length beyond the body",
    )


def content_length_not_a_number(shipment_id: str) -> RawAnswer:
    body = json.dumps(query_body(shipment_id, "DELIVERED")).encode()
    return RawAnswer((b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n" + body,), name="Content-Length -1")


def closed_mid_body(shipment_id: str) -> RawAnswer:
    body = json.dumps(query_body(shipment_id, "DELIVERED")).encode()
    return RawAnswer(
        (f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:10],), name="closed mid-body"
    )


def not_http(shipment_id: str) -> RawAnswer:
    return RawAnswer((b"SSH-2.0-OpenSSH_9.6\r\n",), name="not HTTP")


def retry_after(value: str, status: int = 503) -> RawAnswer:
    return http_answer(
        b'{"errors": [{"code": "busy", "message": "slow down"}]}',
        status,
        headers={"Retry-After": value},
        name=f"Retry-After {value[:20]}",
    )


#: Every answer that makes a carrier's query answer an error (the drip aside: it takes time).
CARRIER_ANSWERS: dict[str, Callable[[str], RawAnswer]] = {
    f.__name__: f
    for f in (
        about_another_shipment,
        status_too_long,
        text_too_long,
        text_with_nul,
        lone_surrogate,
        not_json,
        not_an_object,
        status_a_number,
        deeply_nested,
        interim,
        oversized,
        oversized_chunked,
        huge_header,
        too_many_headers,
        control_character_in_header,
        bad_chunk_size,
        content_length_beyond_the_body,
        content_length_not_a_number,
        closed_mid_body,
        not_http,
    )
}
