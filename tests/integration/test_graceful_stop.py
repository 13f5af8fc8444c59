"""SIGTERM/SIGINT: stop taking work, finish what is in hand, hand back the rest, exit 0."""

from __future__ import annotations

import signal
import time

import pytest

from events import package_packed, package_shipped, to_bytes
from harness import wait_until


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_publisher_finishes_its_call_hands_back_the_rest_and_exits_zero(pipeline, signum):
    pipeline.carrier.fate = lambda order_number: ["SHIPPING", "DELIVERED"]
    pipeline.omnitron.latency_s = 0.3  # slow Omnitron: a stop lands while a call is in hand
    for service in ("packer", "shipper", "tracker"):
        pipeline.start(service)
    [publisher] = pipeline.start("omnitron-publisher")
    items = list(range(80_000, 80_008))
    for n, item in enumerate(items):
        packed = package_packed(f"PKG-G{n}", f"ORD-G{n}", [item])
        shipped = package_shipped(f"PKG-G{n}")
        pipeline.publisher.publish(
            "package.packed", to_bytes(packed), message_id=packed["id"], event_type="PackagePacked"
        )
        pipeline.publisher.publish(
            "package.shipped", to_bytes(shipped), message_id=shipped["id"], event_type="PackageShipped"
        )

    wait_until(lambda: len(pipeline.omnitron.calls) >= 3, 60, message="a few Omnitron calls")
    started = time.monotonic()
    publisher.process.send_signal(signum)
    assert publisher.process.wait(30) == 0
    assert time.monotonic() - started < 10
    calls_at_stop = len(pipeline.omnitron.calls)
    time.sleep(1)
    assert len(pipeline.omnitron.calls) == calls_at_stop, "nothing is sent after the process exited"
    assert '"clean": true' in publisher.log_text()

    pipeline.start("omnitron-publisher")
    expected = [("extra", "pending"), ("extra", "registered"), ("bulk", "500"), ("bulk", "550")]
    wait_until(
        lambda: all(len(pipeline.omnitron.calls_for_item(i)) >= 4 for i in items),
        90,
        message="every item relayed after the restart",
    )
    time.sleep(1)
    for item in items:
        # Nothing lost, nothing sent twice: the call in hand at the stop was finished and acked.
        assert pipeline.omnitron.calls_for_item(item) == expected
