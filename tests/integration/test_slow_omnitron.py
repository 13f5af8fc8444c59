"""Omnitron slow to answer, or asking us to wait.

An Omnitron call that gets no answer may still land, after a newer one: the newest
status is sent again once it has settled, so Omnitron never ends on an older status.
A Retry-After longer than every delay tier is waited out in full, as one attempt.
"""

from __future__ import annotations

import time

from events import shipment_status_changed, to_bytes
from harness import wait_until
from recorded import record_change

ITEM = 97_001


def _publish(pipeline, sequence: int, status: str, previous: str) -> None:
    event = shipment_status_changed("shp-late-1", sequence, status, previous, [ITEM])
    record_change(pipeline.database_url, event)  # the services act only on changes they recorded
    pipeline.publisher.publish(
        f"shipment.status_changed.{status}", to_bytes(event), message_id=event["id"], event_type="ShipmentStatusChanged"
    )


def test_an_older_status_landing_late_at_omnitron_is_overwritten_by_the_newest_once_settled(pipeline_factory):
    pipeline = pipeline_factory(extra_env={"OMS_OMNITRON_TIMEOUT_S": "0.5", "OMS_OMNITRON_SETTLE_S": "7"})
    omnitron = pipeline.omnitron
    pipeline.start("omnitron-publisher")
    omnitron.stall_next(1, 5.0)  # the first attempt of "shipped" is processed 5 s late; the client gives up at 0.5 s

    _publish(pipeline, 3, "shipped", "registered")
    wait_until(lambda: omnitron.calls_for_item(ITEM) == [("bulk", "500")], 30, message="shipped, by the retry")
    _publish(pipeline, 4, "delivered", "shipped")

    wait_until(
        lambda: ("bulk", "550") in omnitron.calls_for_item(ITEM)[2:],
        30,
        message="delivered sent again after the late shipped",
    )
    calls = omnitron.calls_for_item(ITEM)
    assert calls == [("bulk", "500"), ("bulk", "550"), ("bulk", "500"), ("bulk", "550")], calls
    assert "newest status sent again after an unanswered call" in pipeline.logs()
    assert all(process.alive() for process in pipeline.processes)


def test_changes_answered_at_once_are_never_sent_again(pipeline_factory):
    pipeline = pipeline_factory(extra_env={"OMS_OMNITRON_SETTLE_S": "1"})
    pipeline.start("omnitron-publisher")

    _publish(pipeline, 3, "shipped", "registered")
    _publish(pipeline, 4, "delivered", "shipped")
    wait_until(lambda: len(pipeline.omnitron.calls_for_item(ITEM)) == 2, 30, message="both relayed")

    time.sleep(2.5)  # two settle windows and more: a mark would have been acted on by now
    assert pipeline.omnitron.calls_for_item(ITEM) == [("bulk", "500"), ("bulk", "550")]


def test_a_retry_after_longer_than_every_delay_tier_is_waited_out_without_counting_attempts(pipeline_factory):
    pipeline = pipeline_factory()  # delay tiers 0.5, 1 and 2 s
    omnitron = pipeline.omnitron
    omnitron.fail_next(3, status=503, retry_after=6)  # every attempt in hand, then the policy's turn
    pipeline.start("omnitron-publisher")

    _publish(pipeline, 3, "shipped", "registered")
    wait_until(lambda: omnitron.calls_for_item(ITEM) == [("bulk", "500")], 60, message="shipped, after the wait")

    answers = [(r.status, r.started) for r in omnitron.requests]
    assert [status for status, _ in answers] == [503, 503, 503, 200]
    assert answers[3][1] - answers[2][1] >= 5.9, "Omnitron asked again before its Retry-After had passed"
    logs = pipeline.logs()
    assert logs.count("handler failed, will retry") == 1  # the wait is one attempt, not one per round
    assert logs.count("waiting out the requested delay") >= 2  # it went round the 2 s tier
