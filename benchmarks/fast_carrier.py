"""A minimal asyncio HTTP/1.1 keep-alive carrier for benchmarks: the contract's query and history.

The stdlib ``ThreadingHTTPServer`` sandbox tops out at a few hundred requests per second,
so it would measure itself, not the tracker. This server answers
``GET /shipments/{id}`` with ``SHIPPING`` and ``GET /shipments/{id}/history`` with one
event, after ``latency_s``; it checks the Basic credentials and the two Akinon headers,
answers 401/400/404 as the contract says, and records every request's arrival time.
``GET /_stats`` (not counted) returns the largest number of requests in any one-second
window, the most requests one shipment had in flight at once, and the total.

Run it in its own process so it does not share an interpreter with what it measures:
``python -m benchmarks.fast_carrier --port 0 --latency-ms 100`` prints its port.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
from collections import Counter

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


class Stats:
    def __init__(self):
        self.arrivals: list[float] = []
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight = 0

    def max_per_window(self, window_s: float = 1.0) -> int:
        times, best, left = sorted(self.arrivals), 0, 0
        for right, t in enumerate(times):
            while t - times[left] >= window_s:
                left += 1
            best = max(best, right - left + 1)
        return best


class CarrierProtocol(asyncio.Protocol):
    def __init__(self, stats: Stats, latency_s: float, auth: bytes):
        self.stats, self.latency_s, self.auth = stats, latency_s, auth
        self.buffer = b""

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            method, path, _ = lines[0].split(b" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            self._handle(method, path.decode(), headers)

    def _handle(self, method: bytes, path: str, headers: dict) -> None:
        if path == "/_stats":
            body = {
                "max_per_second": self.stats.max_per_window(),
                "max_in_flight_per_shipment": self.stats.max_in_flight,
                "requests": len(self.stats.arrivals),
            }
            return self._reply(200, body)
        self.stats.arrivals.append(time.monotonic())
        parts = path.strip("/").split("/")
        if headers.get(b"authorization") != self.auth:
            return self._reply(401, {"errors": [{"code": "unauthorized", "message": "bad credentials"}]})
        if not headers.get(b"x-akinon-request-id") or not headers.get(b"x-akinon-api-version"):
            return self._reply(400, {"errors": [{"code": "missing_header", "message": "akinon headers"}]})
        if method != b"GET" or parts[0] != "shipments" or len(parts) not in (2, 3):
            return self._reply(404, {"errors": [{"code": "not_found", "message": path}]})
        shipment_id = parts[1]
        self.stats.in_flight[shipment_id] += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight[shipment_id])
        if len(parts) == 3:
            body = {
                "shipmentId": shipment_id,
                "events": [
                    {
                        "status": "SHIPPING",
                        "date": "2026-11-27T12:00:00Z",
                        "description": "In transit",
                        "location": "Hub",
                    }
                ],
            }
        else:
            body = {
                "shipmentId": shipment_id,
                "trackingNumber": "BEN" + shipment_id[:9],
                "status": "SHIPPING",
                "statusDate": "2026-11-27T12:00:00Z",
                "description": "In transit",
            }
        if self.latency_s:
            asyncio.get_running_loop().call_later(self.latency_s, self._reply, 200, body, shipment_id)
        else:
            self._reply(200, body, shipment_id)

    def _reply(self, status: int, body: dict, shipment_id: str | None = None) -> None:
        if shipment_id is not None:
            self.stats.in_flight[shipment_id] -= 1
        if self.transport.is_closing():
            return
        payload = json.dumps(body).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (status, _REASONS[status].encode(), len(payload), payload)
        )


async def serve(port: int, latency_s: float, username: str, password: str) -> None:
    stats = Stats()
    auth = b"Basic " + base64.b64encode(f"{username}:{password}".encode())
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: CarrierProtocol(stats, latency_s, auth), "127.0.0.1", port, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--username", default="bench")
    parser.add_argument("--password", default="bench-secret")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, args.latency_ms / 1000, args.username, args.password))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
