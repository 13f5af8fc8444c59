"""Acking a batch: one ``multiple`` ack for a contiguous run, never past an unsettled delivery."""

from __future__ import annotations

from shared.disposal import DelayedRetries, Disposer, ack_plan
from shared.failure import RetryPolicy


class FakeMessage:
    def __init__(self, tag: int, acks: list):
        self.delivery_tag = tag
        self._acks = acks

    def ack(self, multiple: bool = False) -> None:
        self._acks.append((self.delivery_tag, multiple))


def disposer(embedded: bool = False) -> Disposer:
    return Disposer(
        service="packer", policy=RetryPolicy(3, (1.0,)), publisher=None, embedded=embedded, delayed=DelayedRetries()
    )


def received(s: Disposer, tags, acks: list) -> dict[int, FakeMessage]:
    messages = {tag: FakeMessage(tag, acks) for tag in tags}
    for message in messages.values():
        s.received(message)
    return messages


def test_a_whole_batch_is_acked_with_one_multiple_ack():
    assert ack_plan(unsettled=[1, 2, 3, 4], acking=[1, 2, 3, 4]) == (4, [])


def test_a_multiple_ack_stops_before_a_delivery_still_in_hand():
    # 3 failed and is being retried elsewhere: not acked by this batch's ack.
    assert ack_plan(unsettled=[1, 2, 3, 4, 5], acking=[1, 2, 4, 5]) == (2, [4, 5])


def test_nothing_is_acked_with_multiple_when_the_oldest_delivery_is_not_ours():
    assert ack_plan(unsettled=[7, 8, 9], acking=[8, 9]) == (None, [8, 9])


def test_the_settler_acks_a_run_once_and_the_next_batch_is_left_alone():
    acks: list = []
    s = disposer()
    messages = received(s, [1, 2, 3, 4, 5, 6], acks)

    s.ack_all([messages[t] for t in (1, 2, 3)])  # 4..6 arrived for the next batch

    assert acks == [(3, True)]
    s.ack_all([messages[t] for t in (4, 5, 6)])
    assert acks == [(3, True), (6, True)]


def test_a_failed_delivery_settled_first_lets_the_run_continue_past_it():
    acks: list = []
    s = disposer()
    messages = received(s, [1, 2, 3], acks)
    s._ack(messages[2])  # what settle() does after its dead-letter copy is confirmed

    s.ack_all([messages[1], messages[3]])

    assert acks == [(2, False), (3, True)]


def test_the_embedded_broker_gets_one_ack_per_message():
    acks: list = []
    s = disposer(embedded=True)
    messages = received(s, [1, 2, 3], acks)

    s.ack_all(list(messages.values()))

    assert acks == [(1, False), (2, False), (3, False)]
