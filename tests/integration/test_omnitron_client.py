"""Omnitron calls: the pure plan, and sending it to the stand-in over real HTTP (CONTRACT.md §5)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest
from structlog.testing import capture_logs

from contracts import ShipmentStatus, ShipmentStatusChanged
from services.omnitron_publisher.omnitron import OmnitronCall, OmnitronClient, plan_calls
from services.standins.omnitron import OmnitronStandIn
from shared.http import PermanentHTTPError, TransientHTTPError

TOKEN = "tok-3n-never-shown"


def change(status: str, **changes) -> ShipmentStatusChanged:
    return ShipmentStatusChanged.model_validate(
        {
            "shipment_id": "b0f2",
            "package_id": "PKG-1001",
            "order_number": "ORD-1001",
            "carrier": "sandbox",
            "tracking_number": "SBX123456789",
            "tracking_url": "https://track.example/SBX123456789",
            "previous_status": None,
            "status": status,
            "carrier_status": None,
            "sequence": 6,
            "changed_at": "2026-11-27T15:30:01+03:00",
            "order_item_ids": [555, 556],
            **changes,
        }
    )


@pytest.fixture
def omnitron():
    with OmnitronStandIn(token=TOKEN) as standin:
        yield standin


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def client(omnitron, waits):
    with OmnitronClient(omnitron.url, TOKEN, sleep=waits.append) as omnitron_client:
        yield omnitron_client


# ---- the plan ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [("shipped", "500"), ("ready_for_pickup", "520"), ("attempted_delivery", "540"), ("delivered", "550")],
)
def test_a_status_with_an_omnitron_code_is_one_bulk_call_for_the_whole_package(status, code):
    assert plan_calls(change(status)) == [
        OmnitronCall(
            "PATCH",
            "/api/i1/order_items/bulk_status_update/",
            {
                "orderitem_set": [
                    {"id": 555, "status": code, "tracking_number": "SBX123456789", "shipping_company": "sandbox"},
                    {"id": 556, "status": code, "tracking_number": "SBX123456789", "shipping_company": "sandbox"},
                ]
            },
            (555, 556),
        )
    ]


@pytest.mark.parametrize("status", ["pending", "registered", "delivery_failed", "cancelled"])
def test_a_status_without_an_omnitron_code_is_one_extra_field_call_per_item(status):
    shipment = {
        "status": status,
        "tracking_number": "SBX123456789",
        "tracking_url": "https://track.example/SBX123456789",
        "carrier": "sandbox",
        "changed_at": "2026-11-27T12:30:01Z",
        "sequence": 6,
    }
    assert plan_calls(change(status)) == [
        OmnitronCall("PATCH", "/api/v1/order_items/555/", {"extra_field": {"shipment": shipment}}, (555,)),
        OmnitronCall("PATCH", "/api/v1/order_items/556/", {"extra_field": {"shipment": shipment}}, (556,)),
    ]


def test_every_status_is_planned_one_way_or_the_other():
    for status in ShipmentStatus:
        assert plan_calls(change(status.value))


def test_a_bulk_update_before_registration_does_not_blank_the_tracking_number():
    (call,) = plan_calls(change("shipped", tracking_number=None, tracking_url=None, order_item_ids=[555]))
    assert call.body == {"orderitem_set": [{"id": 555, "status": "500", "shipping_company": "sandbox"}]}


def test_a_change_naming_no_order_item_plans_no_call_and_repeated_ids_are_sent_once():
    assert plan_calls(change("delivered", order_item_ids=[])) == []
    assert [c.order_item_ids for c in plan_calls(change("delivered", order_item_ids=[555, 555]))] == [(555,)]


def test_changed_at_is_sent_in_utc_with_a_z_even_when_naive():
    (call,) = plan_calls(change("cancelled", order_item_ids=[555], changed_at=datetime(2026, 11, 27, 12, 30, 1)))
    assert call.body["extra_field"]["shipment"]["changed_at"] == "2026-11-27T12:30:01Z"


# ---- sending -----------------------------------------------------------------------------


def test_sending_the_plan_through_the_stand_in_records_the_calls(client, omnitron):
    for status in ("registered", "shipped", "delivered"):
        for call in plan_calls(change(status)):
            assert client.send(call).status == 200
    assert [(c["method"], c["path"]) for c in omnitron.calls] == [
        ("PATCH", "/api/v1/order_items/555/"),
        ("PATCH", "/api/v1/order_items/556/"),
        ("PATCH", "/api/i1/order_items/bulk_status_update/"),
        ("PATCH", "/api/i1/order_items/bulk_status_update/"),
    ]
    assert omnitron.calls[2]["body"] == plan_calls(change("shipped"))[0].body
    assert omnitron.calls_for_item(556) == [("extra", "registered"), ("bulk", "500"), ("bulk", "550")]


def test_another_process_can_read_the_recorded_calls(client, omnitron):
    (call,) = plan_calls(change("delivered"))
    client.send(call)
    recorded = httpx.get(f"{omnitron.url}/_standin/calls").json()
    assert recorded == omnitron.calls
    assert recorded[0]["body"] == call.body and recorded[0]["at"].endswith("Z")


def test_a_500_twice_then_success_is_retried(client, omnitron, waits):
    omnitron.fail_next(2, status=500)
    (call,) = plan_calls(change("delivered"))
    assert client.send(call).status == 200
    assert [r.status for r in omnitron.requests] == [500, 500, 200]
    assert len(waits) == 2 and len(omnitron.calls) == 1


def test_a_429_retry_after_in_seconds_is_honoured(client, omnitron, waits):
    omnitron.fail_next(1, status=429, retry_after=7)
    client.send(plan_calls(change("delivered"))[0])
    assert waits[0] >= 7


def test_a_retry_after_given_as_an_http_date_is_honoured(client, omnitron, waits):
    omnitron.fail_next(
        1, status=503, retry_after=format_datetime(datetime.now(timezone.utc) + timedelta(seconds=20), usegmt=True)
    )
    client.send(plan_calls(change("delivered"))[0])
    assert 15 <= waits[0] <= 20


def test_omnitron_still_down_after_the_attempts_surfaces_as_transient(omnitron, waits):
    omnitron.fail_next(3, status=502)
    with OmnitronClient(omnitron.url, TOKEN, retry_attempts=3, sleep=waits.append) as omnitron_client:
        with pytest.raises(TransientHTTPError) as raised:
            omnitron_client.send(plan_calls(change("delivered"))[0])
    assert raised.value.status == 502 and omnitron.calls == []


def test_an_answer_after_an_unanswered_attempt_is_unsettled_and_the_lost_attempt_still_lands(omnitron, waits):
    omnitron.stall_next(1, 1.0)
    (call,) = plan_calls(change("delivered"))
    with OmnitronClient(omnitron.url, TOKEN, timeout_s=0.3, sleep=waits.append) as omnitron_client:
        sent = omnitron_client.send(call)
        assert (sent.status, sent.unsettled) == (200, True)
        assert len(omnitron.calls) == 1  # the retry's
        time.sleep(1.2)
    assert len(omnitron.calls) == 2  # ...and the attempt given up on, applied after it
    assert omnitron.calls[0]["body"] == omnitron.calls[1]["body"]


def test_an_answer_at_the_first_attempt_is_settled(client, omnitron):
    assert client.send(plan_calls(change("delivered"))[0]).unsettled is False


def test_unanswered_to_the_last_attempt_is_ambiguous_and_refused_connections_are_not(omnitron, waits):
    omnitron.stall_next(2, 1.0)
    with OmnitronClient(omnitron.url, TOKEN, timeout_s=0.3, retry_attempts=2, sleep=waits.append) as slow_client:
        with pytest.raises(TransientHTTPError) as unanswered:
            slow_client.send(plan_calls(change("delivered"))[0])
    assert unanswered.value.ambiguous and unanswered.value.status is None

    url = omnitron.url
    omnitron.stop()
    with OmnitronClient(url, TOKEN, retry_attempts=2, sleep=waits.append) as refused_client:
        with pytest.raises(TransientHTTPError) as refused:
            refused_client.send(plan_calls(change("delivered"))[0])
    assert not refused.value.ambiguous


def test_a_gateway_timeout_is_ambiguous_and_a_bad_gateway_is_not(omnitron, waits):
    (call,) = plan_calls(change("delivered"))
    with OmnitronClient(omnitron.url, TOKEN, retry_attempts=1, sleep=waits.append) as omnitron_client:
        for status, ambiguous in ((504, True), (502, False)):
            omnitron.fail_next(1, status=status)
            with pytest.raises(TransientHTTPError) as raised:
                omnitron_client.send(call)
            assert (raised.value.status, raised.value.ambiguous) == (status, ambiguous)


def test_a_400_is_permanent_carries_omnitrons_answer_and_is_not_retried(client, omnitron, waits):
    omnitron.reject_item_ids = {556}
    with pytest.raises(PermanentHTTPError) as raised:
        client.send(plan_calls(change("delivered"))[0])
    assert raised.value.status == 400
    assert "Order item 556 cannot be updated: its order is closed." in raised.value.message
    assert len(omnitron.requests) == 1 and waits == [] and omnitron.calls == []


def test_the_stand_in_refuses_bodies_that_are_not_omnitrons(client):
    with pytest.raises(PermanentHTTPError, match="orderitem_set"):
        client.send(
            OmnitronCall("PATCH", "/api/i1/order_items/bulk_status_update/", {"orderitem_set": [{"id": 1}]}, (1,))
        )
    with pytest.raises(PermanentHTTPError, match="extra_field"):
        client.send(OmnitronCall("PATCH", "/api/v1/order_items/1/", {"shipment": {}}, (1,)))


def test_a_wrong_token_gets_401_which_is_permanent(omnitron):
    with OmnitronClient(omnitron.url, "not-the-token") as omnitron_client:
        with pytest.raises(PermanentHTTPError) as raised:
            omnitron_client.send(plan_calls(change("delivered"))[0])
    assert raised.value.status == 401 and "Invalid token." in raised.value.message


def test_the_token_never_appears_in_reprs_errors_or_logs(omnitron):
    omnitron.fail_next(5, status=500)
    with capture_logs() as logs:
        omnitron_client = OmnitronClient(omnitron.url, TOKEN, sleep=lambda s: None)
        with pytest.raises(TransientHTTPError) as raised:
            omnitron_client.send(plan_calls(change("delivered"))[0])
    texts = [repr(omnitron_client), str(omnitron_client), str(logs), str(raised.value), repr(raised.value)]
    assert logs and all(TOKEN not in text for text in texts)
