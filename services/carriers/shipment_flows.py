"""The Akinon "Shipment Flows" carrier protocol (CONTRACT.md §4): one module per carrier.

Request building and answer parsing are pure functions over plain dicts; only
:class:`ShipmentFlowsClient` does HTTP. Callers never see a raw carrier dict: they get
:class:`Registration`, :class:`CarrierSnapshot` and :class:`CarrierEvent`.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import quote

import structlog

from contracts import PackagePacked, ShipmentStatus
from shared.http import (
    DEFAULT_MAX_RETRY_AFTER_S,
    BoundedClient,
    HttpAnswer,
    PermanentHTTPError,
    TransientHTTPError,
    call_with_retries,
    raise_for_response,
    redact_url,
    request_bounded,
)
from shared.logging import register_secrets
from shared.metrics import observe_http

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


# What a carrier's answer may hold (CONTRACT.md §4). A value outside these bounds makes the
# whole answer an error for its one request: stored as it came, a status too long for its
# column or a text holding U+0000 would make the database refuse the transaction that
# records it, and with it every other shipment's answer in the same batch.
MAX_STATUS_CHARS = 64
MAX_TRACKING_NUMBER_CHARS = 255
MAX_TEXT_CHARS = 2000
#: More events than any parcel collects; a longer history is not believed.
MAX_HISTORY_EVENTS = 1000
#: Carrier dates outside these years are not believed.
MIN_YEAR, MAX_YEAR = 1970, 9000


def decode_json(body: bytes, what: str) -> Any:
    """A carrier's JSON answer; :class:`CarrierProtocolError` for anything that is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested deeper than the parser goes
        raise CarrierProtocolError(f"{what} answered non-JSON: {body[:80]!r}") from None


def _object(body: Any, what: str) -> dict:
    if not isinstance(body, dict):
        raise CarrierProtocolError(f"{what} is not a JSON object")
    return body


def _text(body: dict, key: str, *, required: bool, max_chars: int = MAX_TEXT_CHARS) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise CarrierProtocolError(f"{key!r} is missing")
        return None
    if not isinstance(value, str):
        raise CarrierProtocolError(f"{key!r} is not a string: {value!r:.80}")
    if len(value) > max_chars:
        raise CarrierProtocolError(f"{key!r} is longer than {max_chars} characters ({len(value)})")
    if "\x00" in value:
        raise CarrierProtocolError(f"{key!r} holds U+0000")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CarrierProtocolError(f"{key!r} holds a lone surrogate") from None
    return value


def _status(body: dict, *, required: bool) -> str | None:
    return _text(body, "status", required=required, max_chars=MAX_STATUS_CHARS)


def _about(body: dict, shipment_id: str | None, what: str) -> dict:
    """The answer, if it is about ``shipment_id`` (an answer that names no shipment is taken as ours)."""
    named = body.get("shipmentId")
    if shipment_id is not None and named is not None and named != shipment_id:
        raise CarrierProtocolError(f"{what} is about another shipment: {named!r:.80}")
    return body


def _date(body: dict, key: str) -> datetime | None:
    value = _text(body, key, required=False, max_chars=64)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CarrierProtocolError(f"{key!r} is not an ISO-8601 date: {value!r:.80}") from None
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:  # year 1 or 9999 with an offset leaves the range in UTC
        raise CarrierProtocolError(f"{key!r} is out of range: {value!r:.80}")
    # A carrier that leaves out the offset means UTC more often than its local time.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def parse_registration(body: Any, shipment_id: str | None = None) -> Registration:
    body = _about(_object(body, "registration answer"), shipment_id, "registration answer")
    return Registration(
        tracking_number=_text(body, "trackingNumber", required=True, max_chars=MAX_TRACKING_NUMBER_CHARS),
        tracking_url=_text(body, "trackingUrl", required=False),
        label_url=_text(body, "labelUrl", required=False),
        # A 2xx registration is a created shipment, whether or not the carrier says so.
        carrier_status=_status(body, required=False) or "CREATED",
    )


def parse_query(body: Any, shipment_id: str | None = None) -> CarrierSnapshot:
    body = _about(_object(body, "query answer"), shipment_id, "query answer")
    return CarrierSnapshot(
        tracking_number=_text(body, "trackingNumber", required=True, max_chars=MAX_TRACKING_NUMBER_CHARS),
        carrier_status=_status(body, required=True),
        status_date=_date(body, "statusDate"),
        description=_text(body, "description", required=False),
    )


def parse_history(body: Any, shipment_id: str | None = None) -> list[CarrierEvent]:
    events = _about(_object(body, "history answer"), shipment_id, "history answer").get("events")
    if not isinstance(events, list):
        raise CarrierProtocolError("'events' is not a list")
    if len(events) > MAX_HISTORY_EVENTS:
        raise CarrierProtocolError(f"history of {len(events)} events, over {MAX_HISTORY_EVENTS}")
    return [
        CarrierEvent(
            carrier_status=_status(event, required=True),
            date=_date(event, "date"),
            description=_text(event, "description", required=False),
            location=_text(event, "location", required=False),
        )
        for event in (_object(e, "history event") for e in events)
    ]


# ---- HTTP ----------------------------------------------------------------------------


class ShipmentFlowsClient:
    """Speaks the protocol to one carrier; safe to share between threads (its ``BoundedClient`` is)."""

    def __init__(
        self,
        config: CarrierConfig,
        http: BoundedClient | None = None,
        retry_attempts: int = 3,
        max_wait_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S,
    ):
        self.config = config
        register_secrets(config.password)
        self._owns_http = http is None
        self._http = http or BoundedClient()
        self._max_retry_after_s = max_retry_after_s
        # The Basic credentials encoded once, not per request.
        credentials = base64.b64encode(f"{config.username}:{config.password}".encode()).decode()
        self._authorization = f"Basic {credentials}"
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
        return parse_registration(answer, shipment_id)

    def query(self, shipment_id: str) -> CarrierSnapshot:
        return parse_query(self._request("GET", f"/shipments/{_segment(shipment_id)}"), shipment_id)

    def history(self, shipment_id: str) -> list[CarrierEvent]:
        return parse_history(self._request("GET", f"/shipments/{_segment(shipment_id)}/history"), shipment_id)

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

        def attempt() -> HttpAnswer:
            # A fresh id per attempt: the carrier's logs must tell retries apart.
            request_id = str(uuid.uuid4())
            headers = {
                "x-akinon-request-id": request_id,
                "x-akinon-api-version": self.config.api_version,
                "accept": "application/json",
                "authorization": self._authorization,
            }
            started = time.monotonic()
            response = request_bounded(
                self._http, method, url, total_s=self.config.timeout_s, json=json, headers=headers
            )
            elapsed_ms = round((time.monotonic() - started) * 1000, 1)
            observe_http(f"carrier:{self.config.code}", method, response.status_code, elapsed_ms / 1000)
            self._log.debug(
                "carrier.request",
                method=method,
                path=path,
                request_id=request_id,
                status=response.status_code,
                elapsed_ms=elapsed_ms,
            )
            raise_for_response(response, self._max_retry_after_s)
            return response

        response = call_with_retries(
            attempt, attempts=self._retry_attempts, max_wait_s=self._max_wait_s, sleep=self._sleep
        )
        if response.status_code == 204 or not response.content:
            return None
        return decode_json(response.content, f"{method} {path}")


def _segment(value: str) -> str:
    return quote(value, safe="")
