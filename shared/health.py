"""Per-process HTTP endpoints: ``/metrics`` (Prometheus), ``/healthz`` (alive), ``/readyz``.

Ready means this process can do its work now: the broker and the database answer.
``/readyz`` names a failing dependency with a fixed word; the exception behind it (which can
carry host names, user names or a driver's echo of the URL) goes to the log, redacted.

Several processes share one host with the same configuration: the server takes the
configured port or, when another process holds it, the next free one above it.
"""

from __future__ import annotations

import errno
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, cast

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.logging import get_logger

Check = Callable[[], None]  # raises when not ready

#: How many ports from the configured one a process tries before it gives up. A hundred
#: processes on one host is beyond any deployment we know; stopping there keeps the search
#: out of ports other software expects, and says so instead of wandering off.
PORT_SEARCH = 100
UNREACHABLE = "unreachable"
REQUEST_TIMEOUT_S = 5  # a scrape or a probe sends its request at once
HIGHEST_PORT = 65535


class CannotListen(OSError):
    """No port could be had: every port of the search range is taken, or the address is refused."""


def _server_class(host: str) -> type[ThreadingHTTPServer]:
    if ":" not in host:
        return ThreadingHTTPServer

    class IPv6Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6

    return IPv6Server


def bind_first_free(
    host: str, port: int, handler: type[BaseHTTPRequestHandler], search: int = PORT_SEARCH
) -> ThreadingHTTPServer:
    """A listening server on ``port``, or the next free port above it; ``0`` means any free port.

    Binding and listening both happen here, in one step per port: two processes that start
    together cannot both end up on one port (the loser's bind or listen fails and it moves on).
    """
    server_class = _server_class(host)
    last = port if port == 0 else min(port + search - 1, HIGHEST_PORT)
    refusal: OSError | None = None
    for candidate in range(port, last + 1):
        try:
            return server_class((host, candidate), handler)
        except OSError as exc:
            refusal = exc
            if exc.errno != errno.EADDRINUSE:
                break  # a refused address or a privileged port: no other port will do better
    # The loop tried at least the configured port (any real port is in range): a refusal was kept.
    refused = cast(OSError, refusal)
    raise CannotListen(refused.errno, _why_not(host, port, last, refused)) from refusal


def _why_not(host: str, port: int, last: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE and port:
        return (
            f"every port from {port} to {last} on {host} is taken; set OMS_METRICS_PORT to the start "
            "of a free range, or 0 for any free port"
        )
    return f"cannot listen on {host}:{port}: {exc.strerror or exc} (OMS_METRICS_HOST, OMS_METRICS_PORT)"


class HealthServer:
    def __init__(
        self,
        *,
        port: int,
        stop: threading.Event,
        checks: dict[str, Check],
        alive: Callable[[], bool] = lambda: True,
        host: str = "0.0.0.0",
    ):
        self._stop = stop
        self._checks = checks
        self._alive = alive
        self._failing: dict[str, str] = {}
        self._log = get_logger(component="health")
        self._server = bind_first_free(host, port, self._handler_class())
        self._server.daemon_threads = True
        self.host = host
        self.port = self._server.server_address[1]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            # A client that does not send its request in time is dropped: each one holds a thread.
            timeout = REQUEST_TIMEOUT_S

            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._reply(200, generate_latest(), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    ok = outer._alive()
                    self._reply(200 if ok else 503, b"ok\n" if ok else b"a component stopped\n")
                elif self.path == "/readyz":
                    failures = outer.failing_checks()
                    body = "".join(f"{name}: {why}\n" for name, why in failures.items()) or "ready\n"
                    self._reply(503 if failures else 200, body.encode())
                else:
                    self._reply(404, b"not found\n")

            def _reply(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # scrapes every few seconds are no news
                pass

        return Handler

    def failing_checks(self) -> dict[str, str]:
        """{dependency: "unreachable"} for each check that fails; the detail is logged, not answered."""
        failures = {}
        for name, check in self._checks.items():
            try:
                check()
            except Exception as exc:
                failures[name] = UNREACHABLE
                self._note_failure(name, f"{type(exc).__name__}: {exc}")
            else:
                self._note_recovery(name)
        return failures

    # Probes ask every few seconds: the log says when a dependency's state changes, not each time.
    def _note_failure(self, name: str, detail: str) -> None:
        if self._failing.get(name) != detail:
            self._failing[name] = detail
            self._log.warning("not ready: a dependency does not answer", dependency=name, error=detail)

    def _note_recovery(self, name: str) -> None:
        if self._failing.pop(name, None) is not None:
            self._log.info("a dependency answers again", dependency=name)

    def run(self) -> None:
        thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)
        thread.start()
        self._stop.wait()
        self._server.shutdown()
        self._server.server_close()
