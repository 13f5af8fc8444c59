"""The Shipment Flows client against a carrier over real HTTP on loopback (CONTRACT.md §4)."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from structlog.testing import capture_logs

from contracts import PackagePacked, ShipmentStatus
from services.carriers.shipment_flows import (
    STATUS_TABLE,
    CarrierConfig,
    CarrierEvent,
    CarrierProtocolError,
    CarrierSnapshot,
    Registration,
    ShipmentFlowsClient,
    build_registration,
    map_status,
    parse_history,
    parse_query,
    parse_registration,
)
from services.standins.sandbox_carrier import FATES, SandboxCarrier, default_fate
from shared.http import PermanentHTTPError, TransientHTTPError

from events import sample_packed

PASSWORD = "pa55-w0rd-never-shown"

PACKED = sample_packed(
    items=[
        {"order_item_id": 555, "sku": "SKU-1", "barcode": "8690000000011", "name": "Shirt", "quantity": 2, "deci": 1.5},
        {"order_item_id": 556, "sku": "SKU-2", "quantity": 1},
    ]
)


def packed(**changes) -> PackagePacked:
    return PackagePacked.model_validate({**PACKED, **changes})


def config_for(url: str, password: str = PASSWORD) -> CarrierConfig:
    return CarrierConfig(code="sandbox", url=url, username="user", password=password)


@pytest.fixture
def sandbox():
    with SandboxCarrier(password=PASSWORD) as carrier:
        yield carrier


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def client(sandbox, waits):
    with ShipmentFlowsClient(config_for(sandbox.url), sleep=waits.append) as carrier_client:
        yield carrier_client


def scripted(*statuses: str) -> SandboxCarrier:
    return SandboxCarrier(password=PASSWORD, fate=lambda order_number: list(statuses))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- the request body -----------------------------------------------------------------


def test_registration_body_matches_the_contract_exactly():
    assert build_registration("b0f2", packed(), "tr-TR") == {
        "shipmentId": "b0f2",
        "orderNumber": "ORD-1001",
        "locale": "tr-TR",
        "deliveryNote": "Ring twice",
        "type": "CUSTOMER",
        "destination": {
            "name": "Ada",
            "surname": "Lovelace",
            "tel": "+905551112233",
            "country": {"code": "TR"},
            "city": {"name": "Istanbul"},
            "district": {"name": "Beyoglu"},
            "township": {"name": ""},
            "zipcode": "34433",
            "addressLine": "Istiklal Cd. 1",
        },
        "products": [
            {"barcode": "8690000000011", "quantity": 2, "deci": 1.5},
            {"barcode": "SKU-2", "quantity": 1},
        ],
        "payment": {"amount": 120.50, "currency": "TRY"},
    }


def test_registration_without_pay_on_delivery_or_note_leaves_both_out():
    body = build_registration(
        "b0f2", packed(payment=None, delivery_note=None, delivery_type="PICK_UP_LOCATION"), "en-US"
    )
    assert "payment" not in body and "deliveryNote" not in body
    assert (body["type"], body["locale"]) == ("PICK_UP_LOCATION", "en-US")


def test_the_carrier_receives_the_payment_amount_as_a_json_number(client, sandbox):
    client.register("b0f2", packed())
    assert sandbox.registrations["b0f2"] == build_registration("b0f2", packed(), "tr-TR")
    assert sandbox.registrations["b0f2"]["payment"]["amount"] == 120.5


# ---- registration ----------------------------------------------------------------------


def test_registering_returns_the_tracking_details(client, sandbox):
    registration = client.register("b0f2", packed())
    assert registration.tracking_number.startswith("SBX") and len(registration.tracking_number) == 12
    assert registration == Registration(
        registration.tracking_number,
        f"{sandbox.url}/track/{registration.tracking_number}",
        f"{sandbox.url}/labels/b0f2.pdf",
        "CREATED",
    )


def test_registering_twice_gives_the_same_tracking_number(client):
    first = client.register("b0f2", packed())
    again = client.register("b0f2", packed())
    assert again.tracking_number == first.tracking_number


@pytest.fixture
def conflict_server():
    """A carrier that answers 409 to every registration and knows the shipment already."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(f"POST {self.path}")
            self._answer(409, {"errors": [{"code": "conflict", "message": "shipment exists"}]})

        def do_GET(self):
            seen.append(f"GET {self.path}")
            self._answer(
                200,
                {
                    "shipmentId": "b0f2",
                    "trackingNumber": "XYZ000000042",
                    "status": "SHIPPING",
                    "statusDate": "2026-11-27T12:30:00Z",
                    "description": "In transit",
                },
            )

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_a_409_on_registration_falls_back_to_querying_the_shipment(conflict_server):
    url, seen = conflict_server
    with ShipmentFlowsClient(config_for(url), sleep=lambda s: None) as carrier_client:
        registration = carrier_client.register("b0f2", packed())
    assert registration == Registration("XYZ000000042", None, None, "SHIPPING")
    assert seen == ["POST /shipments", "GET /shipments/b0f2"]


# ---- failures ----------------------------------------------------------------------------


def test_a_500_then_success_is_retried(client, sandbox, waits):
    sandbox.fail_next(1, status=500)
    assert client.register("b0f2", packed()).tracking_number.startswith("SBX")
    assert [r.status for r in sandbox.requests] == [500, 201]
    assert len(waits) == 1


def test_a_429_retry_after_is_honoured(client, sandbox, waits):
    sandbox.fail_next(1, status=429, retry_after=3)
    client.register("b0f2", packed())
    assert [r.status for r in sandbox.requests] == [429, 201]
    assert waits[0] >= 3


def test_a_retry_after_beyond_the_longest_wait_is_capped(sandbox, waits):
    sandbox.fail_next(1, status=503, retry_after=3600)
    with ShipmentFlowsClient(config_for(sandbox.url), max_wait_s=2.0, sleep=waits.append) as carrier_client:
        carrier_client.register("b0f2", packed())
    assert waits == [2.0]


def test_transient_failures_beyond_the_attempts_surface_as_transient(client, sandbox, waits):
    sandbox.fail_next(3, status=502)
    with pytest.raises(TransientHTTPError) as raised:
        client.register("b0f2", packed())
    assert raised.value.status == 502 and "injected_fault" in raised.value.message
    assert len(sandbox.requests) == 3 and len(waits) == 2


def test_a_400_is_permanent_carries_the_carriers_message_and_is_not_retried(client, sandbox, waits):
    with pytest.raises(PermanentHTTPError) as raised:
        client.register("b0f2", packed(order_number="REJECT-7"))
    assert raised.value.status == 400
    assert raised.value.message == "address_not_serviceable: order REJECT-7: destination district is not served"
    assert len(sandbox.requests) == 1 and waits == []


def test_a_rejected_registration_succeeds_once_the_carrier_is_fixed(client, sandbox):
    with pytest.raises(PermanentHTTPError):
        client.register("b0f2", packed(order_number="REJECT-7"))
    sandbox.rejecting = False
    assert client.register("b0f2", packed(order_number="REJECT-7")).tracking_number.startswith("SBX")


def test_a_refused_connection_is_transient_and_retried(waits):
    with ShipmentFlowsClient(config_for(f"http://127.0.0.1:{free_port()}"), sleep=waits.append) as carrier_client:
        with pytest.raises(TransientHTTPError) as raised:
            carrier_client.query("b0f2")
    assert raised.value.status is None
    assert len(waits) == 2


def test_a_query_for_an_unknown_shipment_is_permanent(client):
    with pytest.raises(PermanentHTTPError) as raised:
        client.query("nope")
    assert raised.value.status == 404 and "unknown shipment nope" in raised.value.message


def test_wrong_credentials_are_permanent(sandbox):
    with ShipmentFlowsClient(config_for(sandbox.url, password="wrong")) as carrier_client:
        with pytest.raises(PermanentHTTPError) as raised:
            carrier_client.query("b0f2")
    assert raised.value.status == 401


# ---- headers and secrets -----------------------------------------------------------------


def test_every_request_carries_the_required_headers_and_a_new_request_id(client, sandbox):
    sandbox.fail_next(1, status=503)
    client.register("b0f2", packed())
    client.query("b0f2")
    client.history("b0f2")
    client.delete("b0f2")
    assert [r.status for r in sandbox.requests] == [503, 201, 200, 200, 204]
    request_ids = [r.headers["x-akinon-request-id"] for r in sandbox.requests]
    assert all(str(uuid.UUID(rid)) == rid for rid in request_ids)
    assert len(set(request_ids)) == len(request_ids)
    assert {r.headers["x-akinon-api-version"] for r in sandbox.requests} == {"1"}


def test_the_password_never_appears_in_reprs_errors_or_logs(sandbox):
    config = config_for(sandbox.url)
    errors: list[Exception] = []
    with capture_logs() as logs:
        carrier_client = ShipmentFlowsClient(config, sleep=lambda s: None)
        sandbox.fail_next(3, status=500)
        for call in (
            lambda: carrier_client.query("b0f2"),
            lambda: carrier_client.register("x", packed(order_number="REJECT-1")),
        ):
            with pytest.raises(Exception) as raised:
                call()
            errors.append(raised.value)
        refused = ShipmentFlowsClient(config_for(f"http://127.0.0.1:{free_port()}"), sleep=lambda s: None)
        with pytest.raises(TransientHTTPError) as raised:
            refused.query("b0f2")
        errors.append(raised.value)
    texts = [repr(config), str(config), repr(carrier_client), repr(refused), str(logs)]
    texts += [f"{e!s} {e!r} {e.message}" for e in errors]
    assert logs and all(PASSWORD not in text for text in texts)


# ---- statuses, fates and history ------------------------------------------------------------


def test_every_carrier_status_maps_as_the_contract_says():
    assert {code: status.value for code, status in STATUS_TABLE.items()} == {
        "CREATED": "registered",
        "SHIPPING": "shipped",
        "READY_FOR_PICKUP": "ready_for_pickup",
        "ATTEMPTED_DELIVERY": "attempted_delivery",
        "DELIVERED": "delivered",
        "DELIVERY_FAILED": "delivery_failed",
        "DELETED": "cancelled",
    }
    assert map_status("delivered") is ShipmentStatus.DELIVERED


def test_an_unknown_carrier_status_maps_to_none_with_a_warning():
    with capture_logs() as logs:
        assert map_status("LOST_IN_SPACE") is None
    assert logs == [{"event": "carrier.unknown_status", "carrier_status": "LOST_IN_SPACE", "log_level": "warning"}]


def test_a_shipment_follows_its_scripted_fate_and_stays_at_the_last_status():
    with scripted("SHIPPING", "ATTEMPTED_DELIVERY", "SHIPPING", "DELIVERED") as carrier:
        with ShipmentFlowsClient(config_for(carrier.url)) as carrier_client:
            carrier_client.register("b0f2", packed())
            answers = [carrier_client.query("b0f2").carrier_status for _ in range(5)]
    assert answers == ["SHIPPING", "ATTEMPTED_DELIVERY", "SHIPPING", "DELIVERED", "DELIVERED"]


def test_history_lists_every_status_answered_so_far():
    with scripted("SHIPPING", "READY_FOR_PICKUP", "DELIVERED") as carrier:
        with ShipmentFlowsClient(config_for(carrier.url)) as carrier_client:
            registration = carrier_client.register("b0f2", packed())
            assert [e.carrier_status for e in carrier_client.history("b0f2")] == ["CREATED"]
            snapshot = carrier_client.query("b0f2")
            carrier_client.query("b0f2")
            events = carrier_client.history("b0f2")
    assert snapshot.tracking_number == registration.tracking_number
    assert [e.carrier_status for e in events] == ["CREATED", "SHIPPING", "READY_FOR_PICKUP"]
    assert {e.location for e in events} == {"Istanbul"}
    assert all(e.date is not None and e.date.tzinfo is not None for e in events)


def test_a_deleted_shipment_answers_deleted_which_means_cancelled(client):
    client.register("b0f2", packed())
    client.delete("b0f2")
    assert map_status(client.query("b0f2").carrier_status) is ShipmentStatus.CANCELLED


def test_the_default_fate_is_one_of_the_four_and_always_the_same_for_an_order():
    fates = {tuple(default_fate(f"ORD-{n}")) for n in range(200)}
    assert fates == {tuple(fate) for fate in FATES.values()}
    assert default_fate("ORD-1001") == default_fate("ORD-1001")


def test_requests_for_one_shipment_overlap_only_when_the_client_overlaps_them(client, sandbox):
    client.register("b0f2", packed())
    for _ in range(3):
        client.query("b0f2")
    assert sandbox.max_in_flight_per_shipment() == 1
    sandbox.latency_s = 0.2
    threads = [threading.Thread(target=client.query, args=("b0f2",)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sandbox.max_in_flight_per_shipment() == 2


# ---- parsing -------------------------------------------------------------------------------


def test_answers_are_parsed_into_whole_values():
    assert parse_query(
        {
            "shipmentId": "b0f2",
            "trackingNumber": "SBX1",
            "status": "SHIPPING",
            "statusDate": "2026-11-27T12:30:00Z",
            "description": "In transit",
        }
    ) == CarrierSnapshot("SBX1", "SHIPPING", datetime(2026, 11, 27, 12, 30, tzinfo=timezone.utc), "In transit")
    assert parse_history(
        {
            "shipmentId": "b0f2",
            "events": [
                {"status": "CREATED", "date": "2026-11-27T10:00:00", "description": None, "location": "Istanbul"}
            ],
        }
    ) == [CarrierEvent("CREATED", datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc), None, "Istanbul")]


@pytest.mark.parametrize(
    ("parse", "body", "complaint"),
    [
        (parse_registration, {"shipmentId": "b0f2"}, "'trackingNumber' is missing"),
        (parse_registration, ["not", "an", "object"], "registration answer is not a JSON object"),
        (parse_query, {"trackingNumber": "SBX1"}, "'status' is missing"),
        (
            parse_query,
            {"trackingNumber": "SBX1", "status": "SHIPPING", "statusDate": "yesterday"},
            "not an ISO-8601 date",
        ),
        (parse_history, {"events": "none"}, "'events' is not a list"),
        (parse_history, {"events": [{"date": "2026-11-27T10:00:00Z"}]}, "'status' is missing"),
    ],
)
def test_a_malformed_carrier_answer_is_a_protocol_error_saying_what_was_wrong(parse, body, complaint):
    with pytest.raises(CarrierProtocolError) as raised:
        parse(body)
    assert complaint in raised.value.message and raised.value.status is None
