"""The tracker's asyncio path to a Shipment Flows carrier: query and history, one attempt each.

The sync :class:`~services.carriers.shipment_flows.ShipmentFlowsClient` stays what the
shipper uses. This one exists for the tracker, which keeps hundreds of queries in flight
from one thread: it never retries by itself (the tracker's pacing decides when a carrier
is asked again, and every request must be one reserved rate-limit slot), and each call
takes a timeout so no request outlives the tracker's lease on its shipment.
Request building and parsing are the pure functions of ``shipment_flows``.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any
from urllib.parse import quote

import httpx

from services.carriers.shipment_flows import (
    CarrierConfig,
    CarrierEvent,
    CarrierProtocolError,
    CarrierSnapshot,
    decode_json,
    parse_history,
    parse_query,
)
from shared import tracing
from shared.http import DEFAULT_MAX_RETRY_AFTER_S, HttpAnswer, TransientHTTPError, raise_for_response, redact_url
from shared.http11 import Http11Pool
from shared.logging import register_secrets

DEFAULT_MAX_CONNECTIONS = 256


class AsyncShipmentFlowsClient:
    def __init__(
        self,
        config: CarrierConfig,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S,
    ):
        self.config = config
        register_secrets(config.password)
        # max_connections is the caller's to keep: the tracker never has more requests in flight;
        # the pool keeps no more idle ones than that.
        self.max_connections = max_connections
        self._max_retry_after_s = max_retry_after_s
        self._pool = Http11Pool(config.url, max_idle=max_connections)
        # Built once: httpx.BasicAuth would run an auth flow for every request.
        credentials = base64.b64encode(f"{config.username}:{config.password}".encode()).decode()
        self._headers = {
            "authorization": f"Basic {credentials}",
            "accept": "application/json",
            "x-akinon-api-version": config.api_version,
        }

    def __repr__(self) -> str:
        return f"AsyncShipmentFlowsClient(code={self.config.code!r}, url={redact_url(self.config.url)!r})"

    async def query(self, shipment_id: str, timeout_s: float | None = None) -> CarrierSnapshot:
        return parse_query(await self._get(_segment(shipment_id), timeout_s), shipment_id)

    async def history(self, shipment_id: str, timeout_s: float | None = None) -> list[CarrierEvent]:
        return parse_history(await self._get(_segment(shipment_id) + "/history", timeout_s), shipment_id)

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def _get(self, path: str, timeout_s: float | None) -> Any:
        headers = {**self._headers, "x-akinon-request-id": str(uuid.uuid4())}
        timeout = self.config.timeout_s if timeout_s is None else min(timeout_s, self.config.timeout_s)
        request = {"headers": headers}
        try:
            with tracing.http_call("GET", self.config.url + "/shipments/" + path, request) as call:
                status, answer_headers, body = await self._pool.get("/shipments/" + path, request["headers"], timeout)
                call.answered(status)
        except httpx.TimeoutException as exc:
            raise TransientHTTPError(f"timed out ({type(exc).__name__})") from exc
        except httpx.RemoteProtocolError as exc:
            raise CarrierProtocolError(f"broken HTTP: {exc}") from exc
        except httpx.TransportError as exc:
            raise TransientHTTPError(f"connection failed ({type(exc).__name__}: {exc})") from exc
        if not 200 <= status < 300:
            raise_for_response(
                HttpAnswer(status, answer_headers, body, self.config.url + "/shipments/" + path),
                self._max_retry_after_s,
            )
        return decode_json(body, f"GET {path}")


def _segment(value: str) -> str:
    return quote(value, safe="")
