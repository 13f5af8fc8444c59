"""The Akinon "Shipment Flows" carrier protocol (CONTRACT.md §4): one module per carrier.

Request building and answer parsing are pure functions over plain dicts; only
:class:`ShipmentFlowsClient` does HTTP. Callers never see a raw carrier dict: they get
:class:`Registration`, :class:`CarrierSnapshot` and :class:`CarrierEvent`.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import quote

import httpx
import structlog

from contracts import PackagePacked, ShipmentStatus
from shared.metrics import observe_http
from shared.http import PermanentHTTPError, TransientHTTPError, call_with_retries, raise_for_response, redact_url
from shared.logging import register_secrets

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CarrierConfig:
    """One ``[carriers.<code>]`` table of the carriers file."""

    code: str
    url: str
    username: str
    password: str = field(repr=False)
    api_version: str = "1"
    locale: str = "tr-TR"
    poll_interval_s: float = 60
    max_requests_per_s: float = 50
    timeout_s: float = 10.0
    # The tracker's knobs (services/tracker/schedule.py and pacing.py).
    max_requests_per_day: int | None = None
    near_delivery_poll_interval_s: float | None = None  # default: a quarter of poll_interval_s
    quiet_after_s: float = 86_400.0
    max_poll_interval_s: float | None = None  # default: 16 times poll_interval_s
    max_tracking_age_s: float = 30 * 86_400.0

    @property
    def near_delivery_interval_s(self) -> float:
        if self.near_delivery_poll_interval_s is not None:
            return self.near_delivery_poll_interval_s
        return self.poll_interval_s / 4

    @property
    def max_interval_s(self) -> float:
        return self.max_poll_interval_s if self.max_poll_interval_s is not None else self.poll_interval_s * 16

    @property
    def paced_rate_per_s(self) -> float:
        """Requests per second all replicas together may send: the day's budget spread evenly."""
        if self.max_requests_per_day is None:
            return self.max_requests_per_s
        return min(self.max_requests_per_s, self.max_requests_per_day / 86_400)


STATUS_TABLE: dict[str, ShipmentStatus] = {
    "CREATED": ShipmentStatus.REGISTERED,  # accepted, label printed, not yet handed over
    "SHIPPING": ShipmentStatus.SHIPPED,  # picked up or in transit (also after a failed attempt)
    "READY_FOR_PICKUP": ShipmentStatus.READY_FOR_PICKUP,  # waiting at a branch or pickup point
    "ATTEMPTED_DELIVERY": ShipmentStatus.ATTEMPTED_DELIVERY,  # customer absent; another try follows
    "DELIVERED": ShipmentStatus.DELIVERED,  # final
    "DELIVERY_FAILED": ShipmentStatus.DELIVERY_FAILED,  # final: returned or undeliverable
    "DELETED": ShipmentStatus.CANCELLED,  # carrier record removed before pickup; final
}


def map_status(carrier_status: str) -> ShipmentStatus | None:
    """Our status for a carrier status; None (and a warning) for codes we do not know.

    None rather than a guess: an unknown code must never move a shipment, and the
    warning tells an operator the table needs a line.
    """
    status = STATUS_TABLE.get(str(carrier_status).strip().upper())
    if status is None:
        log.warning("carrier.unknown_status", carrier_status=carrier_status)
    return status


class CarrierProtocolError(TransientHTTPError):
    """The carrier answered 2xx with something that is not the protocol.

    Transient: such answers come from deployments and glitches on the carrier's side;
    the request is safe to repeat and a later attempt usually gets a proper answer.
    """

    def __init__(self, message: str):
        super().__init__(f"malformed carrier answer: {message}", status=None)


@dataclass(frozen=True)
class Registration:
    tracking_number: str
    tracking_url: str | None
    label_url: str | None
    carrier_status: str


@dataclass(frozen=True)
class CarrierSnapshot:
    tracking_number: str
    carrier_status: str
    status_date: datetime | None
    description: str | None


@dataclass(frozen=True)
class CarrierEvent:
    carrier_status: str
    date: datetime | None
    description: str | None
    location: str | None


# ---- pure request building and answer parsing ----------------------------------------


def build_registration(shipment_id: str, packed: PackagePacked, locale: str) -> dict:
    """The JSON body of ``POST /shipments`` for a packed package."""
    dest = packed.destination
    body: dict[str, Any] = {
        "shipmentId": shipment_id,
        "orderNumber": packed.order_number,
        "locale": locale,
    }
    if packed.delivery_note:  # an empty note carries nothing for the courier
        body["deliveryNote"] = packed.delivery_note
    body["type"] = packed.delivery_type
    body["destination"] = {
        "name": dest.name,
        "surname": dest.surname,
        "tel": dest.phone,
        "country": {"code": dest.country_code},
        "city": {"name": dest.city},
        "district": {"name": dest.district},
        "township": {"name": dest.township},
        "zipcode": dest.zipcode,
        "addressLine": dest.address_line,
    }
    products = []
    for item in packed.items:
        # Carriers scan a barcode; items without one are labelled with their SKU.
        product: dict[str, Any] = {"barcode": item.barcode or item.sku, "quantity": item.quantity}
        if item.deci is not None:
            product["deci"] = item.deci
        products.append(product)
    body["products"] = products
    if packed.payment is not None:
        # The protocol wants a JSON number; money amounts have two decimals, which a
        # float carries exactly enough for its shortest repr to round-trip.
        body["payment"] = {"amount": float(packed.payment.amount), "currency": packed.payment.currency}
    return body


def _object(body: Any, what: str) -> dict:
    if not isinstance(body, dict):
        raise CarrierProtocolError(f"{what} is not a JSON object")
    return body


def _text(body: dict, key: str, *, required: bool) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise CarrierProtocolError(f"{key!r} is missing")
        return None
    if not isinstance(value, str):
        raise CarrierProtocolError(f"{key!r} is not a string: {value!r:.80}")
    return value


def _date(body: dict, key: str) -> datetime | None:
    value = _text(body, key, required=False)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CarrierProtocolError(f"{key!r} is not an ISO-8601 date: {value!r:.80}") from None
    # A carrier that leaves out the offset means UTC more often than its local time.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def parse_registration(body: Any) -> Registration:
    body = _object(body, "registration answer")
    return Registration(
        tracking_number=_text(body, "trackingNumber", required=True),
        tracking_url=_text(body, "trackingUrl", required=False),
        label_url=_text(body, "labelUrl", required=False),
        # A 2xx registration is a created shipment, whether or not the carrier says so.
        carrier_status=_text(body, "status", required=False) or "CREATED",
    )


def parse_query(body: Any) -> CarrierSnapshot:
    body = _object(body, "query answer")
    return CarrierSnapshot(
        tracking_number=_text(body, "trackingNumber", required=True),
        carrier_status=_text(body, "status", required=True),
        status_date=_date(body, "statusDate"),
        description=_text(body, "description", required=False),
    )


def parse_history(body: Any) -> list[CarrierEvent]:
    events = _object(body, "history answer").get("events")
    if not isinstance(events, list):
        raise CarrierProtocolError("'events' is not a list")
    return [
        CarrierEvent(
            carrier_status=_text(event, "status", required=True),
            date=_date(event, "date"),
            description=_text(event, "description", required=False),
            location=_text(event, "location", required=False),
        )
        for event in (_object(e, "history event") for e in events)
    ]


# ---- HTTP ----------------------------------------------------------------------------


class ShipmentFlowsClient:
    """Speaks the protocol to one carrier. Thread-safe as far as ``httpx.Client`` is."""

    def __init__(
        self,
        config: CarrierConfig,
        http: httpx.Client | None = None,
        retry_attempts: int = 3,
        max_wait_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.config = config
        register_secrets(config.password)
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=config.timeout_s)
        self._auth = httpx.BasicAuth(config.username, config.password)
        self._base = config.url.rstrip("/")
        self._retry_attempts = retry_attempts
        self._max_wait_s = max_wait_s
        self._sleep = sleep
        self._log = log.bind(carrier=config.code)

    def __repr__(self) -> str:
        return f"ShipmentFlowsClient(code={self.config.code!r}, url={redact_url(self._base)!r})"

    def register(self, shipment_id: str, packed: PackagePacked) -> Registration:
        body = build_registration(shipment_id, packed, self.config.locale)
        try:
            answer = self._request("POST", "/shipments", json=body)
        except PermanentHTTPError as exc:
            if exc.status != 409:
                raise
            # The carrier already has this shipment (an earlier attempt got through but
            # its answer was lost): adopt its record instead of failing.
            self._log.info("carrier.register.already_registered", shipment_id=shipment_id)
            snapshot = self.query(shipment_id)
            return Registration(snapshot.tracking_number, None, None, snapshot.carrier_status)
        return parse_registration(answer)

    def query(self, shipment_id: str) -> CarrierSnapshot:
        return parse_query(self._request("GET", f"/shipments/{_segment(shipment_id)}"))

    def history(self, shipment_id: str) -> list[CarrierEvent]:
        return parse_history(self._request("GET", f"/shipments/{_segment(shipment_id)}/history"))

    def delete(self, shipment_id: str) -> None:
        self._request("DELETE", f"/shipments/{_segment(shipment_id)}")

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> "ShipmentFlowsClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _request(self, method: str, path: str, json: dict | None = None) -> Any:
        url = self._base + path

        def attempt() -> httpx.Response:
            # A fresh id per attempt: the carrier's logs must tell retries apart.
            request_id = str(uuid.uuid4())
            headers = {
                "x-akinon-request-id": request_id,
                "x-akinon-api-version": self.config.api_version,
                "accept": "application/json",
            }
            started = time.monotonic()
            response = self._http.request(method, url, json=json, headers=headers, auth=self._auth)
            elapsed_ms = round((time.monotonic() - started) * 1000, 1)
            observe_http(f"carrier:{self.config.code}", method, response.status_code, elapsed_ms / 1000)
            self._log.debug("carrier.request", method=method, path=path, request_id=request_id,
                            status=response.status_code, elapsed_ms=elapsed_ms)
            raise_for_response(response)
            return response

        response = call_with_retries(attempt, attempts=self._retry_attempts, max_wait_s=self._max_wait_s,
                                     sleep=self._sleep)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CarrierProtocolError(f"{method} {path} answered non-JSON: {response.text[:80]!r}") from None


def _segment(value: str) -> str:
    return quote(value, safe="")
