"""The tracker's HTTP/1.1 client reads answers as h11 (the reference parser) does, or stricter;
the shipper's and the publisher's bounded httpx client reads them as the tracker's does.

Each raw answer is served by a real socket server on loopback and read by
``Http11Pool``; the same bytes are fed to ``h11``. Where both accept, the status and
body are the same; where h11 refuses, so does ours. The few answers h11 lets through
and we refuse are listed in ``STRICTER`` with the reason (CONTRACT.md §4, RFC 9112).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import h11
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.http import BoundedClient, request_bounded
from shared.http11 import MAX_HEADERS, Http11Pool

OK = b"HTTP/1.1 200 OK\r\n"

ANSWERS: dict[str, bytes] = {
    "content-length": OK + b"Content-Length: 2\r\n\r\nhi",
    "chunked": OK + b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n1;ext=1\r\n!\r\n0\r\n\r\n",
    "chunked with trailers": OK + b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-T: 1\r\n\r\n",
    "read until close": OK + b"\r\nhello",
    "no reason phrase": b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nhi",
    "HTTP/1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    "equal content-lengths": OK + b"Content-Length: 2, 2\r\n\r\nhi",
    "error status": b"HTTP/1.1 503 Busy\r\nRetry-After: 5\r\nContent-Length: 2\r\n\r\nno",
    "no content 204": b"HTTP/1.1 204 No Content\r\n\r\n",
    # malformed
    "conflicting content-lengths": OK + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\nhi!",
    "content-length not a number": OK + b"Content-Length: -1\r\n\r\nhi",
    "content-length beyond the body": OK + b"Content-Length: 10\r\n\r\nhi",
    "bad chunk size": OK + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n",
    "chunk size with 0x": OK + b"Transfer-Encoding: chunked\r\n\r\n0x2\r\nhi\r\n0\r\n\r\n",
    "chunk longer than its size": OK + b"Transfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
    "chunked cut short": OK + b"Transfer-Encoding: chunked\r\n\r\n10\r\nhi",
    "unsupported transfer-encoding": OK + b"Transfer-Encoding: gzip\r\n\r\nhi",
    "not HTTP": b"SSH-2.0-OpenSSH_9.6\r\n",
    "status not three digits": b"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nhi",
    "header without colon": OK + b"Content-Length 2\r\n\r\nhi",
    "space before colon": OK + b"Content-Length : 2\r\n\r\nhi",
    "closed mid-head": OK + b"Content-Len",
    # h11 accepts these; we do not (STRICTER)
    "interim answer": b"HTTP/1.1 100 Continue\r\n\r\n" + OK + b"Content-Length: 2\r\n\r\nhi",
    "obsolete line folding": OK + b"X-A: a\r\n b\r\nContent-Length: 2\r\n\r\nhi",
    "transfer-encoding and content-length": OK + b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"
    b"2\r\nhi\r\n0\r\n\r\n",
    "control character in a header value": OK + b"X-Bad: a\x01b\r\nContent-Length: 2\r\n\r\nhi",
    "too many headers": OK
    + b"".join(b"X-H%d: 1\r\n" % n for n in range(MAX_HEADERS + 1))
    + b"Content-Length: 2\r\n\r\nhi",
    "body over the cap": OK + b"Content-Length: 2048\r\n\r\n" + b"x" * 2048,
    "huge header": OK + b"X-Big: " + b"a" * 70_000 + b"\r\nContent-Length: 2\r\n\r\nhi",
}

STRICTER = {
    "interim answer": "our requests ask for no interim answer: CONTRACT.md §4 makes one an error",
    "obsolete line folding": "RFC 9112 §5.2 lets a user agent reject it",
    "transfer-encoding and content-length": "RFC 9112 §6.3: a sign of request smuggling",
    "control character in a header value": "RFC 9110 §5.5: field values hold no control characters",
    "too many headers": f"at most {MAX_HEADERS} header lines",
    "body over the cap": "the body cap (1 MiB; 1 KiB in this test)",
    "huge header": "at most 64 KiB of head (h11 bounds only a head that arrives in pieces, at 16 KiB)",
}
MAX_BODY = 1024


class RawServer:
    """Answers every request on a connection with the same bytes, then closes it."""

    def __init__(self, answer: bytes):
        self.answer = answer
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                data = connection.recv(65536)
                if not data:
                    return
                request += data
            try:
                connection.sendall(self.answer)
                connection.shutdown(socket.SHUT_WR)
            except OSError:  # the client refused the answer half way and closed
                return
            time.sleep(0.2)

    def close(self) -> None:
        self.socket.close()


def h11_reads(raw: bytes) -> tuple[int, bytes] | None:
    """(status, body) as h11 reads the answer; None if h11 refuses it."""
    connection = h11.Connection(h11.CLIENT)
    connection.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    connection.send(h11.EndOfMessage())
    connection.receive_data(raw)
    connection.receive_data(b"")
    status, body = None, b""
    try:
        while True:
            event = connection.next_event()
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, body
            elif event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return None
    except h11.RemoteProtocolError:
        return None


def ours_reads(raw: bytes) -> tuple[int, bytes] | None:
    server = RawServer(raw)

    async def read():
        pool = Http11Pool(server.url, max_body_bytes=MAX_BODY)
        try:
            status, _, body = await pool.get("/", {}, timeout_s=5)
            return status, body
        finally:
            await pool.aclose()

    try:
        return asyncio.run(read())
    except httpx.RemoteProtocolError:
        return None
    finally:
        server.close()


@pytest.mark.parametrize("name", sorted(set(ANSWERS) - set(STRICTER)))
def test_the_client_reads_an_answer_as_h11_does(name):
    assert ours_reads(ANSWERS[name]) == h11_reads(ANSWERS[name])


@pytest.mark.parametrize("name", sorted(STRICTER))
def test_the_client_refuses_what_h11_would_let_through_where_the_contract_is_stricter(name):
    assert h11_reads(ANSWERS[name]) is not None, "h11 refuses it too: not a divergence any more"
    assert ours_reads(ANSWERS[name]) is None, STRICTER[name]


def test_an_answer_that_drips_in_slower_than_the_deadline_ends_at_the_deadline():
    listener = socket.create_server(("127.0.0.1", 0))

    def drip() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            try:
                for byte in OK + b"Content-Length: 2\r\n\r\nhi":
                    connection.sendall(bytes([byte]))
                    time.sleep(0.2)
            except OSError:  # the client gave up at its deadline
                pass

    threading.Thread(target=drip, daemon=True).start()

    async def read():
        pool = Http11Pool(f"http://127.0.0.1:{listener.getsockname()[1]}")
        try:
            await pool.get("/", {}, timeout_s=1.0)
        finally:
            await pool.aclose()

    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        asyncio.run(read())
    assert time.monotonic() - started < 2.5
    listener.close()


def keep_alive_server(next_answer) -> socket.socket:
    """A listener that keeps each connection open, answering every request with ``next_answer()``."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.listen(64)

    def keep_alive(connection: socket.socket) -> None:
        with connection:
            while connection.recv(65536):
                connection.sendall(next_answer())

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=keep_alive, args=(connection,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener


def test_the_idle_pool_keeps_no_more_connections_than_its_bound():
    listener = keep_alive_server(lambda: OK + b"Content-Length: 2\r\n\r\nhi")

    async def many_at_once() -> int:
        pool = Http11Pool(f"http://127.0.0.1:{listener.getsockname()[1]}", max_idle=3)
        try:
            answers = await asyncio.gather(*(pool.get("/", {}, timeout_s=5) for _ in range(20)))
            assert all(answer[2] == b"hi" for answer in answers)
            return pool.idle_connections
        finally:
            await pool.aclose()

    assert asyncio.run(many_at_once()) == 3
    listener.close()


def test_a_header_value_with_a_line_break_is_never_sent():
    server = RawServer(OK + b"Content-Length: 2\r\n\r\nhi")

    async def send(headers):
        pool = Http11Pool(server.url)
        try:
            return await pool.get("/", headers, timeout_s=5)
        finally:
            await pool.aclose()

    try:
        assert asyncio.run(send({"x-akinon-api-version": "1"}))[2] == b"hi"
        for forged in ("1\r\nx-forged: yes", "1\nx-forged: yes", "1\rx", "1\x00"):
            with pytest.raises(ValueError):
                asyncio.run(send({"x-akinon-api-version": forged}))
    finally:
        server.close()


def bounded_reads(raw: bytes) -> tuple[int, bytes] | None:
    """(status, body) as the shipper's and the publisher's client reads the answer; None if refused."""
    server = RawServer(raw)
    try:
        with BoundedClient() as client:
            response = request_bounded(client, "GET", server.url + "/", total_s=5.0, max_body_bytes=MAX_BODY)
        return response.status_code, response.content
    except httpx.TransportError:
        return None
    finally:
        server.close()


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_the_sync_clients_read_every_answer_as_the_trackers_client_does(name):
    assert bounded_reads(ANSWERS[name]) == ours_reads(ANSWERS[name])


def test_bytes_an_answer_left_on_a_kept_alive_connection_never_fail_the_next_request():
    """The first answer says two bytes and sends five: the next request, on the same pool,
    must not read the three left over as its own (broken) answer."""
    answers = iter([OK + b"Content-Length: 2\r\n\r\nhello"] + [OK + b"Content-Length: 2\r\n\r\nhi"] * 5)
    listener = keep_alive_server(lambda: next(answers))

    async def twice():
        pool = Http11Pool(f"http://127.0.0.1:{listener.getsockname()[1]}")
        try:
            first = await pool.get("/", {}, timeout_s=5)
            await asyncio.sleep(0.05)  # the left-over bytes are there before the next request
            return first, await pool.get("/", {}, timeout_s=5)
        finally:
            await pool.aclose()

    first, second = asyncio.run(twice())
    assert first[2] == b"he" and second[2] == b"hi"
    listener.close()


# ---- fuzzed answers: the two drivers of one reader agree, and never let through what h11 refuses ----


@st.composite
def odd_answers(draw) -> bytes:
    """A table answer with a few bytes inserted, deleted or replaced, or cut short."""
    raw = bytearray(draw(st.sampled_from(sorted(ANSWERS.values()))))
    for op, at, data in draw(
        st.lists(
            st.tuples(
                st.sampled_from(["insert", "delete", "replace", "cut"]),
                st.integers(0, 1 << 17),
                st.sampled_from([b"\r\n", b"\r", b"\n", b"\x00", b" ", b":", b"0", b"9", b"\xff", b"HTTP/1.1 "])
                | st.binary(min_size=1, max_size=6),
            ),
            min_size=1,
            max_size=4,
        )
    ):
        at %= len(raw) + 1
        if op == "insert":
            raw[at:at] = data
        elif op == "delete":
            del raw[at : at + len(data)]
        elif op == "replace":
            raw[at : at + len(data)] = data
        else:
            del raw[at:]
    return bytes(raw)


def _fuzz_answers_read_alike(raw: bytes) -> None:
    started = time.monotonic()
    sync, tracker = bounded_reads(raw), ours_reads(raw)
    assert time.monotonic() - started < 12, "an answer held a reader past its deadline"
    assert sync == tracker, f"the blocking and the asyncio pool disagree on {raw[:200]!r}"
    if sync is not None:
        reference = h11_reads(raw)
        assert reference is None or reference == sync, f"ours {sync!r}, h11 {reference!r}: {raw[:200]!r}"


@pytest.mark.parametrize(
    "examples", [pytest.param(60, id="slice"), pytest.param(1500, id="long", marks=pytest.mark.fuzz)]
)
def test_fuzzed_answers_are_read_alike_by_both_pools_and_never_more_leniently_than_h11(examples):
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(odd_answers())
    def check(raw: bytes) -> None:
        _fuzz_answers_read_alike(raw)

    check()
