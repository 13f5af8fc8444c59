"""Per-process HTTP endpoints: ``/metrics`` (Prometheus), ``/healthz`` (alive), ``/readyz``.

Ready means this process can do its work now: the broker and the database answer.
"""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.logging import get_logger

Check = Callable[[], None]  # raises when not ready


class HealthServer:
    def __init__(self, *, port: int, stop: threading.Event, checks: dict[str, Check],
                 alive: Callable[[], bool] = lambda: True, host: str = "0.0.0.0"):
        self._stop = stop
        self._checks = checks
        self._alive = alive
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._log = get_logger(component="health")

    def _handler_class(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
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

            def log_message(self, *args) -> None:  # scrapes every few seconds are no news
                pass

        return Handler

    def failing_checks(self) -> dict[str, str]:
        failures = {}
        for name, check in self._checks.items():
            try:
                check()
            except Exception as exc:
                failures[name] = f"{type(exc).__name__}: {exc}"
        return failures

    def run(self) -> None:
        self._log.info("serving /metrics, /healthz and /readyz", port=self.port)
        thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)
        thread.start()
        self._stop.wait()
        self._server.shutdown()
        self._server.server_close()
