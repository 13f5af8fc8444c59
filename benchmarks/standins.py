"""The carrier and Omnitron a benchmark talks to, each in a process of its own.

They are the project's contract-following stand-ins (services/standins), answering at
0 ms, plus what the benchmark reads back over ``GET /_standin/bench/…``: when each
(shipment, carrier status) was first answered, and when Omnitron first received each
call.  Times are ``time.monotonic()``, one clock for every process of the machine.  A
process of their own keeps them from competing with the benchmark for one interpreter.

    python -m benchmarks.standins carrier|omnitron   # prints its URL, serves until stdin closes
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from urllib.parse import parse_qs, urlsplit

from services.standins.omnitron import OmnitronStandIn
from services.standins.sandbox_carrier import SandboxCarrier

CARRIER_PASSWORD = "bench-carrier-secret"
OMNITRON_TOKEN = "bench-omnitron-token"
# Carrier answers: registered at once, then in transit, then delivered (a poll later).
FATE = ["SHIPPING", "DELIVERED"]
# What a carrier status becomes in Omnitron (CONTRACT.md §3, §5): how a latency is matched.
OMNITRON_CALL = {
    "CREATED": ("extra", "registered"),
    "READY_FOR_PICKUP": ("bulk", "520"),
    "ATTEMPTED_DELIVERY": ("bulk", "540"),
    "DELIVERED": ("bulk", "550"),
    "DELIVERY_FAILED": ("extra", "delivery_failed"),
}
FINAL_CALL = ("bulk", "550")
_MATCHED = frozenset(OMNITRON_CALL.values())
_BENCH = "/_standin/bench/"


class BenchCarrier(SandboxCarrier):
    def __init__(self):
        super().__init__(username="bench", password=CARRIER_PASSWORD, fate=lambda _order: list(FATE))
        self.first_answered: dict[tuple[str, str], float] = {}
        self.orders: dict[str, str] = {}  # shipment id -> order number

    def handle(self, method, path, headers, body):
        if path == _BENCH + "answers":
            with self._lock:
                return (
                    200,
                    [[sid, self.orders.get(sid, ""), status, at] for (sid, status), at in self.first_answered.items()],
                    {},
                )
        reply = super().handle(method, path, headers, body)
        answer = reply[1]
        if reply[0] in (200, 201) and isinstance(answer, dict) and "status" in answer:
            now = time.monotonic()
            with self._lock:
                self.first_answered.setdefault((answer["shipmentId"], answer["status"]), now)
                # Only what the benchmark reads is kept: a soak would otherwise grow these.
                for shipment_id, registration in self.registrations.items():
                    self.orders[shipment_id] = registration["orderNumber"]
                self.registrations.clear()
                self.requests.clear()
        return reply


class BenchOmnitron(OmnitronStandIn):
    def __init__(self):
        super().__init__(token=OMNITRON_TOKEN)
        self.first_call: dict[tuple[int, str, str], float] = {}
        self.final_at: dict[int, float] = {}
        self._request = threading.local()

    def handle(self, method, path, headers, raw):
        if path == _BENCH + "calls":
            with self._lock:
                return 200, [[*key, at] for key, at in self.first_call.items()], {}
        if path == _BENCH + "finals":
            return 200, self._finals(), {}
        reply = super().handle(method, path, headers, raw)
        if reply[0] == 200:
            now = time.monotonic()
            body = json.loads(raw)
            if "orderitem_set" in body:
                calls = [(entry["id"], "bulk", entry["status"]) for entry in body["orderitem_set"]]
            else:
                calls = [(int(path.rstrip("/").rsplit("/", 1)[1]), "extra", body["extra_field"]["shipment"]["status"])]
            with self._lock:
                for key in calls:
                    if key[1:] in _MATCHED:
                        self.first_call.setdefault(key, now)
                    if key[1:] == FINAL_CALL:
                        self.final_at.setdefault(key[0], now)
                self.calls.clear()  # the stand-in's own log of every call would only grow
                self.requests.clear()
        return reply

    def _finals(self) -> dict:
        query = parse_qs(urlsplit(self._request.path).query)
        first, count = int(query["first"][0]), int(query["count"][0])
        with self._lock:
            times = [self.final_at[item] for item in range(first, first + count) if item in self.final_at]
        return {"done": len(times), "last": max(times, default=None)}

    def _serve(self, handler) -> None:
        self._request.path = handler.path  # with its query string, which handle() does not get
        super()._serve(handler)


class StandIn:
    """A stand-in in a child process: its URL, and what it recorded."""

    def __init__(self, kind: str):
        self.kind = kind
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.standins", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = self._process.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError(f"the {kind} stand-in did not start")

    def get(self, path: str):
        with urllib.request.urlopen(self.url + _BENCH + path, timeout=60) as answer:
            return json.load(answer)

    def __enter__(self) -> "StandIn":
        return self

    def __exit__(self, *exc_info) -> None:
        self._process.stdin.close()
        self._process.wait(10)


def main(kind: str) -> None:
    server = BenchCarrier() if kind == "carrier" else BenchOmnitron()
    # Its request handler threads are the only work here: a short switch interval lets
    # a waiting one answer at once instead of after the running one's 5 ms slice.
    sys.setswitchinterval(0.001)
    with server:
        print(server.url, flush=True)
        sys.stdin.read()  # until the benchmark closes it (or dies)


if __name__ == "__main__":
    main(sys.argv[1])
