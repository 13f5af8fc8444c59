"""Each way a carrier's or Omnitron's answer can be wrong is an error for that one request (CONTRACT.md §4).

Real stand-in servers on loopback answer one shipment (or order item) with hostile bytes
(``services/standins/hostile.py``) and every other one normally; the clients are the
ones the services use: the tracker's asyncio client (``http11``), the shipper's
``ShipmentFlowsClient`` and the publisher's ``OmnitronClient`` (httpx, bounded).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from structlog.testing import capture_logs

from services.carriers.async_client import AsyncShipmentFlowsClient
from services.carriers.shipment_flows import CarrierConfig, ShipmentFlowsClient, map_status
from services.omnitron_publisher.omnitron import OmnitronCall, OmnitronClient
from services.standins import hostile
from services.standins.omnitron import OmnitronStandIn
from services.standins.sandbox_carrier import SandboxCarrier, _Shipment
from shared.http import TransientHTTPError, parse_retry_after

PASSWORD = "hostile-secret"
HOSTILE, NORMAL = "shp-hostile", "shp-normal"


@pytest.fixture
def carrier():
    with SandboxCarrier(password=PASSWORD) as server:
        for shipment_id in (HOSTILE, NORMAL):
            shipment = _Shipment(shipment_id, "ORD-" + shipment_id, "Istanbul", "SBX" + shipment_id, ["SHIPPING"])
            shipment.answer("CREATED")
            server._shipments[shipment_id] = shipment
        yield server


def config(carrier, timeout_s: float = 5.0) -> CarrierConfig:
    return CarrierConfig(code="sandbox", url=carrier.url, username="user", password=PASSWORD, timeout_s=timeout_s)


async def query_both(carrier, timeout_s: float = 5.0):
    """The hostile shipment and the normal one, asked at once on one client; (hostile outcome, normal snapshot)."""
    client = AsyncShipmentFlowsClient(config(carrier, timeout_s))
    try:
        hostile_answer, normal = await asyncio.gather(
            client.query(HOSTILE), client.query(NORMAL), return_exceptions=True
        )
        after = await client.query(NORMAL)  # the client is not poisoned by what it read
        return hostile_answer, normal, after
    finally:
        await client.aclose()


@pytest.mark.parametrize("answer", sorted(hostile.CARRIER_ANSWERS))
def test_the_trackers_client_makes_a_hostile_query_answer_an_error_and_answers_the_others(carrier, answer):
    carrier.misbehave(HOSTILE, hostile.CARRIER_ANSWERS[answer](HOSTILE))
    outcome, normal, after = asyncio.run(query_both(carrier))
    assert isinstance(outcome, TransientHTTPError), outcome
    assert normal.carrier_status == after.carrier_status == "SHIPPING"


@pytest.mark.parametrize("answer", sorted(hostile.CARRIER_ANSWERS))
def test_the_shippers_client_makes_a_hostile_answer_an_error(carrier, answer):
    carrier.misbehave(HOSTILE, hostile.CARRIER_ANSWERS[answer](HOSTILE))
    with ShipmentFlowsClient(config(carrier), sleep=lambda s: None) as client:
        with pytest.raises(TransientHTTPError):
            client.query(HOSTILE)
        assert client.query(NORMAL).carrier_status == "SHIPPING"


def test_a_history_with_events_that_are_not_a_list_is_an_error(carrier):
    carrier.misbehave(HOSTILE, hostile.history_events_not_a_list(HOSTILE), when=lambda m, p: p.endswith("/history"))

    async def history():
        client = AsyncShipmentFlowsClient(config(carrier))
        try:
            return await asyncio.gather(client.history(HOSTILE), client.history(NORMAL), return_exceptions=True)
        finally:
            await client.aclose()

    outcome, normal = asyncio.run(history())
    assert isinstance(outcome, TransientHTTPError) and "not a list" in str(outcome)
    assert [event.carrier_status for event in normal] == ["CREATED"]


def test_an_unknown_carrier_status_is_read_and_maps_to_nothing_with_a_warning(carrier):
    carrier.misbehave(HOSTILE, hostile.unknown_status(HOSTILE))
    _, normal, _ = asyncio.run(query_both(carrier))
    with ShipmentFlowsClient(config(carrier)) as client:
        snapshot = client.query(HOSTILE)
    with capture_logs() as logs:
        assert map_status(snapshot.carrier_status) is None
    assert [log["event"] for log in logs] == ["carrier.unknown_status"]


def test_a_dripping_answer_ends_at_the_requests_deadline_for_both_carrier_clients(carrier):
    carrier.misbehave(HOSTILE, hostile.drip(HOSTILE, seconds=20))
    started = time.monotonic()
    outcome, normal, _ = asyncio.run(query_both(carrier, timeout_s=1.0))
    assert isinstance(outcome, TransientHTTPError) and normal.carrier_status == "SHIPPING"
    assert time.monotonic() - started < 4
    with ShipmentFlowsClient(config(carrier, timeout_s=1.0), retry_attempts=1) as client:
        started = time.monotonic()
        with pytest.raises(TransientHTTPError):
            client.query(HOSTILE)
    assert time.monotonic() - started < 3, "the shipper waited on the drip past its deadline"


@pytest.mark.parametrize(
    "value",
    [
        "-5",
        "nan",
        "inf",
        "1e999",
        "1_000",
        "soon",
        "99999999",
        "Wed, 21 Oct 2015 07:28:00 GMT",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ],
)
def test_a_retry_after_that_is_too_long_negative_or_unreadable_waits_the_bound_and_is_logged(carrier, value):
    carrier.misbehave(HOSTILE, hostile.retry_after(value))
    with capture_logs() as logs:
        outcome, _, _ = asyncio.run(query_both(carrier))
    assert isinstance(outcome, TransientHTTPError) and outcome.retry_after == 3600
    assert any(log["event"] == "http.retry_after_bounded" for log in logs)


def test_a_retry_after_within_the_bound_is_honoured_as_it_is():
    assert parse_retry_after("120", bound_s=3600) == 120
    assert parse_retry_after("120", bound_s=60) == 60


# ---- Omnitron ---------------------------------------------------------------------------

OMNITRON_ANSWERS = [
    "interim",
    "oversized",
    "huge_header",
    "too_many_headers",
    "bad_chunk_size",
    "content_length_beyond_the_body",
    "closed_mid_body",
    "not_http",
]


@pytest.fixture
def omnitron():
    with OmnitronStandIn(token="omni-token") as server:
        yield server


def item_call(item_id: int) -> OmnitronCall:
    return OmnitronCall(
        "PATCH",
        f"/api/v1/order_items/{item_id}/",
        {"extra_field": {"shipment": {"status": "delivery_failed"}}},
        (item_id,),
    )


@pytest.mark.parametrize("answer", OMNITRON_ANSWERS)
def test_a_hostile_omnitron_answer_is_an_error_for_that_call_and_the_next_call_goes_through(omnitron, answer):
    omnitron.misbehave("555", getattr(hostile, answer)("555"))
    with OmnitronClient(omnitron.url, "omni-token", retry_attempts=1, sleep=lambda s: None) as client:
        with pytest.raises(TransientHTTPError):
            client.send(item_call(555))
        assert client.send(item_call(556)).status == 200
    assert omnitron.calls_for_item(556) == [("extra", "delivery_failed")]


def test_a_dripping_omnitron_answer_ends_at_the_calls_deadline(omnitron):
    omnitron.misbehave("555", hostile.drip("555", seconds=20))
    with OmnitronClient(omnitron.url, "omni-token", timeout_s=1.0, retry_attempts=1) as client:
        started = time.monotonic()
        with pytest.raises(TransientHTTPError):
            client.send(item_call(555))
    assert time.monotonic() - started < 3


def test_omnitrons_unreadable_retry_after_waits_the_clients_bound(omnitron):
    omnitron.misbehave("555", hostile.retry_after("whenever", status=429))
    with OmnitronClient(omnitron.url, "omni-token", retry_attempts=1, max_retry_after_s=90) as client:
        with pytest.raises(TransientHTTPError) as raised:
            client.send(item_call(555))
    assert raised.value.retry_after == 90


def test_an_error_answer_nested_too_deep_or_too_long_still_gives_a_short_reason(carrier):
    nested = hostile.http_answer(b"[" * 200_000, status=500)
    endless = hostile.http_answer(
        ('{"errors": [' + ",".join(['{"code": "x", "message": "' + "m" * 500 + '"}'] * 100) + "]}").encode(), status=503
    )
    for answer in (nested, endless):
        carrier.misbehave(HOSTILE, answer)
        outcome, normal, _ = asyncio.run(query_both(carrier))
        assert isinstance(outcome, TransientHTTPError) and len(outcome.message) <= 500
        with ShipmentFlowsClient(config(carrier), sleep=lambda s: None) as client:
            with pytest.raises(TransientHTTPError) as raised:
                client.query(HOSTILE)
        assert len(raised.value.message) <= 500
