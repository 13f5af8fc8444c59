"""The hostile-upstream suite's shrunk failing examples, kept as explicit cases (issue #10).

Each case is one odd message the fuzzer found stopping a service, stalling in the retry
queues, getting the wrong verdict or a dead letter that lies about it, on the code of the
day it was found (see each id). It is published beside a normal package into the running
services and must be applied or dead-lettered at once with a true dead letter, while the
normal package behind it is packed and no process exits. The module ends with every normal
package delivered in Omnitron and nothing in flight.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from shared import naming

from hostile_messages import (
    APPLIED,
    DEAD,
    DeepList,
    DeepTable,
    binary_mode,
    broken,
    encoded,
    event_with,
    forged,
    timestamp,
    valid_event,
)

_FORGED = "forged"
CASES = [
    # ---- a process exited ----
    pytest.param(
        lambda: broken("an array nested 1,000 levels", "shipment.status_changed.delivered"),
        id="a body nested a thousand levels does not stop the omnitron publisher's connection thread",
    ),
    pytest.param(
        lambda: broken("an object nested 200,000 levels", "shipment.status_changed.pending"),
        id="a body nested two hundred thousand levels stops neither the shipper nor the publisher",
    ),
    pytest.param(
        lambda: valid_event("packed", DEAD, "a compression header", {"compression": "gzip"}),
        id="a compression header is dead-lettered undecoded instead of making kombu stop the packer",
    ),
    pytest.param(
        lambda: valid_event("shipped", DEAD, "a compression header of a number", {"compression": 1}),
        id="a compression header of any type is dead-lettered by the shipper",
    ),
    pytest.param(
        lambda: valid_event(
            "packed", APPLIED, "x-oms-not-before without a zone", {naming.HEADER_NOT_BEFORE: "2026-11-27T10:00:00"}
        ),
        id="an outside x-oms-not-before without a time zone is ignored and does not stop the packer",
    ),
    pytest.param(
        lambda: valid_event(
            "packed", APPLIED, "x-oms-not-before as an AMQP timestamp", {naming.HEADER_NOT_BEFORE: datetime(2020, 1, 1)}
        ),
        id="an outside x-oms-not-before as an AMQP timestamp is ignored and does not stop the packer",
    ),
    pytest.param(
        lambda: valid_event(
            "packed", APPLIED, "a header timestamp in year 10000", {"sent-at": timestamp(253402300800)}
        ),
        id="a header timestamp past year 9999 does not stop the packer while the frame is read",
    ),
    pytest.param(
        lambda: valid_event("shipped", APPLIED, "a header timestamp of 2^64-1", {"sent-at": timestamp(2**64 - 1)}),
        id="a header timestamp of 2^64-1 does not stop the shipper while the frame is read",
    ),
    pytest.param(
        lambda: valid_event("packed", APPLIED, "a header array nested 1,100 levels", {"deep": DeepList(1100)}),
        id="a header array nested eleven hundred levels does not stop the packer while the frame is read",
    ),
    pytest.param(
        lambda: valid_event("shipped", APPLIED, "a header table nested 1,100 levels", {"deep": DeepTable(1100)}),
        id="a header table nested eleven hundred levels does not stop the shipper while the frame is read",
    ),
    pytest.param(
        lambda: broken("an empty body", headers={naming.HEADER_ATTEMPTS: 2**63 - 1}),
        id="an outside x-oms-attempts of 2^63-1 does not overflow the dead letter and stop the packer",
    ),
    pytest.param(
        lambda: broken("a lone brace", headers={naming.HEADER_ATTEMPTS: 1e308}),
        id="an outside x-oms-attempts of 1e308 does not overflow the dead letter and stop the packer",
    ),
    # ---- parked or retried instead of judged at once ----
    pytest.param(
        lambda: valid_event(
            "packed", APPLIED, "x-oms-not-before in 2099", {naming.HEADER_NOT_BEFORE: "2099-01-01T00:00:00+00:00"}
        ),
        id="an outside x-oms-not-before in 2099 does not park a valid package for ever",
    ),
    pytest.param(
        lambda: broken("truncated JSON", headers={naming.HEADER_NOT_BEFORE: "9999-12-31T23:59:59+00:00"}),
        id="an outside x-oms-not-before does not park a bad message instead of dead-lettering it",
    ),
    pytest.param(
        lambda: event_with("packed", "order item id 2^63"),
        id="an order item id of 2^63 is dead-lettered at once not after twelve attempts",
    ),
    pytest.param(
        lambda: event_with("packed", "quantity 2^31"),
        id="a quantity of 2^31 is applied or dead-lettered at once not retried",
    ),
    pytest.param(
        lambda: event_with("packed", "sku of 256 characters"),
        id="a sku of 256 characters is dead-lettered at once not retried",
    ),
    pytest.param(
        lambda: event_with("packed", "order number of 256 characters"),
        id="an order number of 256 characters is dead-lettered at once not retried",
    ),
    pytest.param(
        lambda: event_with("packed", "an id of 256 characters"),
        id="an event id of 256 characters is dead-lettered at once not retried",
    ),
    pytest.param(
        lambda: event_with("packed", "sku with U+0000"), id="a sku holding U+0000 is dead-lettered at once not retried"
    ),
    pytest.param(
        lambda: event_with("packed", "duplicate order item ids"),
        id="a package holding one order item id twice is dead-lettered at once not retried",
    ),
    pytest.param(
        lambda: event_with("packed", "deci Infinity"), id="a deci of Infinity is dead-lettered at once not retried"
    ),
    pytest.param(
        lambda: event_with("shipped", "package id of 256 characters"),
        id="a hand-over with a package id of 256 characters is dead-lettered at once not retried",
    ),
    pytest.param(
        lambda: event_with("shipped", "package id with U+0000"),
        id="a hand-over with a package id holding U+0000 is dead-lettered at once not retried",
    ),
    pytest.param(
        lambda: forged("pending", 3),
        id="a forged pending change of an unknown shipment is dead-lettered by the shipper at once",
    ),
    pytest.param(
        lambda: forged("delivery_failed", 2**31, "x" * 64),
        id="a forged change with sequence 2^31 is dead-lettered by the omnitron publisher at once",
    ),
    # ---- the wrong verdict ----
    pytest.param(lambda: event_with("packed", "order item id true"), id="an order item id of true is rejected"),
    pytest.param(lambda: event_with("packed", "order item id 2.0"), id="an order item id of 2.0 is rejected"),
    pytest.param(lambda: event_with("packed", "order item id '2'"), id="an order item id of the string 2 is rejected"),
    pytest.param(lambda: event_with("packed", "order item id 0"), id="an order item id of 0 is rejected"),
    pytest.param(lambda: event_with("packed", "order item id -1"), id="a negative order item id is rejected"),
    pytest.param(lambda: event_with("packed", "quantity true"), id="a quantity of true is rejected"),
    pytest.param(lambda: event_with("packed", "deci '1.5'"), id="a deci given as a string is rejected"),
    pytest.param(
        lambda: event_with("packed", "item name of 256 characters"), id="an item name of 256 characters is rejected"
    ),
    pytest.param(
        lambda: event_with("packed", "delivery note of 2001 characters"),
        id="a delivery note of 2001 characters is rejected",
    ),
    pytest.param(
        lambda: event_with("packed", "address line of 2001 characters"),
        id="an address line of 2001 characters is rejected",
    ),
    pytest.param(lambda: event_with("packed", "name with U+0000"), id="a recipient name holding U+0000 is rejected"),
    pytest.param(
        lambda: event_with("packed", "surname with a lone surrogate"),
        id="a surname holding a lone surrogate is rejected",
    ),
    pytest.param(
        lambda: event_with("shipped", "a shipping company of 256 characters"),
        id="a hand-over's shipping company of 256 characters is rejected",
    ),
    pytest.param(
        lambda: event_with("shipped", "a tracking URL of 2001 characters"),
        id="a hand-over's tracking url of 2001 characters is rejected",
    ),
    pytest.param(
        lambda: valid_event("packed", DEAD, "content encoding gzip", content_encoding="gzip"),
        id="a gzip content encoding is dead-lettered undecoded",
    ),
    pytest.param(
        lambda: valid_event("shipped", DEAD, "content encoding identity", content_encoding="identity"),
        id="any content encoding but utf-8 or binary is dead-lettered undecoded",
    ),
    pytest.param(lambda: encoded("a valid PackagePacked in UTF-16"), id="a body in utf-16 is rejected as not utf-8"),
    pytest.param(lambda: encoded("a valid PackagePacked in UTF-32"), id="a body in utf-32 is rejected as not utf-8"),
    pytest.param(lambda: forged("shipped", 3), id="a forged shipped change of an unknown shipment is dead-lettered"),
    pytest.param(
        lambda: forged("delivered", 2), id="a forged delivered change of an unknown shipment is dead-lettered"
    ),
    pytest.param(lambda: binary_mode("packed"), id="a binary-mode packed event is applied from its ce headers"),
    pytest.param(lambda: binary_mode("shipped"), id="a binary-mode shipped event is applied from its ce headers"),
    pytest.param(
        lambda: binary_mode("packed", "the whole envelope as the body"),
        id="a binary-mode message whose body is a whole envelope is rejected",
    ),
    # ---- a dead letter that lies ----
    pytest.param(
        lambda: broken("an empty body", headers={naming.HEADER_ATTEMPTS: 11}),
        id="an outside x-oms-attempts does not count on the dead letter",
    ),
    pytest.param(
        lambda: broken("a JSON number", headers={naming.HEADER_ROUTING_KEY: "package.shipped"}),
        id="an outside x-oms-original-routing-key does not reach the dead letter",
    ),
    pytest.param(
        lambda: broken("null", headers={naming.HEADER_FIRST_FAILURE: _FORGED}),
        id="an outside x-oms-first-failure-at does not reach the dead letter",
    ),
    pytest.param(
        lambda: broken("true", headers={naming.HEADER_REPLAYED_FROM: _FORGED, "x-oms-something-new": _FORGED}),
        id="outside x-oms headers the services do not set are not copied onto the dead letter",
    ),
    pytest.param(
        lambda: broken("truncated JSON", content_type=None),
        id="a dead letter of a message without content type stays replayable",
    ),
]


@pytest.mark.parametrize("make", CASES)
def test_a_fuzzer_finding_is_applied_or_dead_lettered_at_once_and_stops_nothing(world, make):
    world.try_messages([make()])


def test_after_the_findings_every_normal_package_is_delivered_and_nothing_is_in_flight(world):
    world.finish()
