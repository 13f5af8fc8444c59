"""Stand-ins for the systems the services talk to: real HTTP servers on loopback.

:class:`StandInServer` is their shared plumbing: a threaded server, fault injection
(error statuses, ``Retry-After``, latency) settable while it runs, and a thread-safe
log of every request so tests can check what actually went over the wire. A peer that
misbehaves for one subject only (one shipment, one order item) among many normal ones:
:meth:`StandInServer.misbehave` with a :class:`RawAnswer` (``services/standins/hostile.py``
builds one for each way a peer's answer can be wrong), written to the socket as it is.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping
from urllib.parse import unquote, urlsplit

import structlog

log = structlog.get_logger(__name__)

# A reply: status, JSON body (None: empty), extra headers.
Reply = tuple[int, Any, dict[str, str]]


def error_reply(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return status, {"errors": [{"code": code, "message": message}]}, headers or {}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class RawAnswer:
    """Bytes written to the client as they are, ``pause_s`` apart, then the connection closed."""

    parts: tuple[bytes, ...]
    pause_s: float = 0.0
    name: str = "raw"  # what it is, in the request log (``RequestRecord.status`` is 0)


@dataclass(frozen=True)
class RequestRecord:
    started: float  # time.monotonic()
    ended: float  # taken just before the answer is written, so a client can never see it later
    method: str
    path: str
    shipment_id: str | None
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased, without Authorization


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A client that hung up on an answer (a hostile one, or after its own timeout) is no error here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class StandInServer:
    """Threaded loopback HTTP server with fault injection and a request log."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host, self.port = host, port
        self.latency_s = 0.0
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._faults: list[tuple[int, str | None]] = []
        self._stalls: list[float] = []
        self._hostile: dict[str, tuple[RawAnswer, Callable[[str, str], bool]]] = {}
        self._in_flight: Counter[str] = Counter()
        self._max_in_flight: Counter[str] = Counter()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- what subclasses provide
    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        raise NotImplementedError

    def subject_of(self, method: str, path: str, body: bytes) -> str | None:
        """The id requests are grouped by in :meth:`max_in_flight_per_shipment`."""
        return None

    # -- lifecycle
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
            # Each answer leaves whole and at once, as a real server's does: headers and
            # body sent apart would wait for the client's delayed ACK (~40 ms) every time.
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                standin._serve(self)

            do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

            def log_message(self, *args) -> None:  # the request log is ``requests``
                pass

        self._server = _QuietServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        # A short poll keeps stop() quick: shutdown() waits for the loop to look up.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- fault injection and observation
    def fail_next(self, n: int, status: int = 500, retry_after: float | str | None = None) -> None:
        """Answer the next ``n`` requests with ``status`` (and ``Retry-After`` if given)."""
        header = None if retry_after is None else (retry_after if isinstance(retry_after, str) else f"{retry_after:g}")
        with self._lock:
            self._faults.extend([(status, header)] * n)

    def stall_next(self, n: int, seconds: float) -> None:
        """Hold the next ``n`` requests ``seconds`` before handling them: a client that gave up
        on its answer meanwhile still has its request applied, late, as on a slow server."""
        with self._lock:
            self._stalls.extend([seconds] * n)

    def misbehave(
        self, subject: str, answer: RawAnswer | None, when: Callable[[str, str], bool] = lambda method, path: True
    ) -> None:
        """Answer every request about ``subject`` (and ``when(method, path)``) with ``answer``; None: normal again."""
        with self._lock:
            if answer is None:
                self._hostile.pop(subject, None)
            else:
                self._hostile[subject] = (answer, when)

    def max_in_flight_per_shipment(self) -> int:
        with self._lock:
            return max(self._max_in_flight.values(), default=0)

    def _write_raw(
        self, handler: BaseHTTPRequestHandler, answer: RawAnswer, started: float, method: str, path: str, subject: str
    ) -> None:
        seen = {k.lower(): v for k, v in handler.headers.items() if k.lower() != "authorization"}
        with self._lock:
            self.requests.append(
                RequestRecord(
                    started, time.monotonic(), method, path, subject, 0, {**seen, "x-standin-answer": answer.name}
                )
            )
        handler.close_connection = True
        try:
            for n, part in enumerate(answer.parts):
                if n and answer.pause_s:
                    time.sleep(answer.pause_s)
                handler.wfile.write(part)
                handler.wfile.flush()
        except OSError:  # the client gave up on it, as it should
            pass

    # -- the request cycle
    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        started = time.monotonic()
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        method, path = handler.command, unquote(urlsplit(handler.path).path)
        control = path.startswith("/_standin/")  # test plumbing: no faults, not recorded
        subject = self.subject_of(method, path, raw)
        with self._lock:
            if subject is not None:
                self._in_flight[subject] += 1
                self._max_in_flight[subject] = max(self._max_in_flight[subject], self._in_flight[subject])
            fault = self._faults.pop(0) if self._faults and not control else None
            stall = self._stalls.pop(0) if self._stalls and not control else 0.0
            hostile = self._hostile.get(subject) if subject is not None and not control else None
            if hostile is not None and hostile[1](method, path):
                self._in_flight[subject] -= 1  # a raw answer is written outside the request cycle
            else:
                hostile = None
        if hostile is not None:
            return self._write_raw(handler, hostile[0], started, method, path, subject)
        try:
            if (self.latency_s or stall) and not control:
                time.sleep(self.latency_s + stall)
            if fault is not None:
                extra = {"Retry-After": fault[1]} if fault[1] is not None else {}
                reply = error_reply(fault[0], "injected_fault", f"injected HTTP {fault[0]}", extra)
            else:
                reply = self.handle(method, path, handler.headers, raw)
        except Exception as exc:  # a bug here must show up as a 500, not a hung client
            log.exception("standin.error", path=path)
            reply = error_reply(500, "internal_error", f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                if subject is not None:
                    self._in_flight[subject] -= 1
        status, body, extra_headers = reply
        if not control:
            seen = {k.lower(): v for k, v in handler.headers.items() if k.lower() != "authorization"}
            record = RequestRecord(started, time.monotonic(), method, path, subject, status, seen)
            with self._lock:
                self.requests.append(record)
        payload = b"" if body is None else json.dumps(body).encode()
        try:
            handler.send_response(status)
            for name, value in extra_headers.items():
                handler.send_header(name, value)
            if payload:
                handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client stopped waiting; its request stands
            handler.close_connection = True


def serve_forever(standin: StandInServer, name: str) -> None:
    """Runs a stand-in in the foreground until interrupted (``oms-shipments standin …``)."""
    with standin:
        print(f"{name} listening on {standin.url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
