"""The chaos checker classifies packages from what was observed: no services, no I/O."""

from __future__ import annotations

from contracts import ShipmentStatus as S

from checker import HistoryRow, Observation, Relay, check, expected_history, judge, omnitron_call

DELIVERED = ("SHIPPING", "DELIVERED")
FAILED = ("SHIPPING", "DELIVERY_FAILED")
PICKED_UP = ("SHIPPING", "READY_FOR_PICKUP", "DELIVERED")
ATTEMPTED = ("SHIPPING", "ATTEMPTED_DELIVERY", "SHIPPING", "DELIVERED")

PENDING, REGISTERED, SHIPPED = ("extra", "pending"), ("extra", "registered"), ("bulk", "500")
PICKUP, ATTEMPT, DONE, NOT_DONE = ("bulk", "520"), ("bulk", "540"), ("bulk", "550"), ("extra", "delivery_failed")


def history(*statuses: str) -> list[tuple]:
    return [(n, statuses[n - 2] if n > 1 else None, status) for n, status in enumerate(statuses, 1)]


def sent(count: int) -> list[tuple]:
    return [(n, "sent") for n in range(1, count + 1)]


def observed(fate=DELIVERED, calls=None, rows=None, relays=None, items=(7,)) -> Observation:
    fate_history = [s.value for s in expected_history(fate)]
    if calls is None:
        calls = [omnitron_call(S(s)) for s in fate_history]
    rows = history(*fate_history) if rows is None else rows
    return Observation("PKG-1", fate, {item: list(calls) for item in items}, rows, relays)


def test_the_expected_history_follows_the_carrier_script_and_ignores_the_stale_shipping():
    assert expected_history(ATTEMPTED) == (S.PENDING, S.REGISTERED, S.SHIPPED, S.ATTEMPTED_DELIVERY, S.DELIVERED)
    assert expected_history(FAILED)[-1] is S.DELIVERY_FAILED


def test_a_package_with_exactly_the_calls_and_history_of_its_fate_is_ok():
    for fate in (DELIVERED, FAILED, PICKED_UP, ATTEMPTED):
        verdict = judge(observed(fate, relays=sent(len(expected_history(fate))), items=(7, 8)))
        assert (verdict.klass, verdict.why) == ("ok", []), fate


def test_a_package_whose_final_status_never_reached_omnitron_is_lost():
    verdict = judge(observed(calls=[PENDING, REGISTERED, SHIPPED]))
    assert verdict.klass == "lost"
    assert verdict.problems["lost"] == ["item 7: final delivered never reached Omnitron (last: shipped)"]


def test_a_package_whose_final_status_never_reached_the_database_is_lost():
    verdict = judge(observed(rows=history("pending", "registered", "shipped"), calls=[PENDING, REGISTERED, SHIPPED]))
    assert verdict.klass == "lost"
    assert "final delivered never reached the database (last: shipped)" in verdict.problems["lost"]


def test_a_package_the_database_never_saw_is_lost():
    verdict = judge(observed(rows=[], calls=[]))
    assert verdict.klass == "lost"
    assert verdict.problems["lost"] == [
        "never reached the database (its PackagePacked was never applied)",
        "item 7: nothing reached Omnitron",
    ]


def test_an_order_item_omnitron_never_heard_of_is_lost_even_when_its_sibling_is_final():
    observation = observed(items=(7,))
    observation = Observation("PKG-1", DELIVERED, {**observation.omnitron, 8: []}, observation.history)
    assert judge(observation).problems == {"lost": ["item 8: nothing reached Omnitron"]}


def test_a_missing_hand_over_is_an_event_never_applied():
    verdict = judge(observed(rows=history("pending", "registered", "delivered"), calls=[PENDING, REGISTERED, DONE]))
    assert verdict.klass == "lost"
    assert verdict.problems["lost"] == ["shipped was never applied in the database"]


def test_a_stored_change_the_publisher_never_handled_is_lost():
    verdict = judge(observed(relays=[(1, "sent"), (2, "sent"), (4, "sent")]))
    assert verdict.problems == {"lost": ["change 3 (shipped) never reached the Omnitron publisher"]}


def test_a_change_logged_as_sent_that_omnitron_never_got_is_lost():
    verdict = judge(observed(calls=[REGISTERED, SHIPPED, DONE], relays=sent(4)))
    assert verdict.problems == {"lost": ["change 1 (pending) is logged as sent, but item 7 never got it"]}


def test_omnitron_seeing_an_older_status_after_a_newer_one_is_a_regression():
    verdict = judge(observed(calls=[PENDING, REGISTERED, SHIPPED, DONE, SHIPPED]))
    assert verdict.klass == "regressed"
    assert verdict.problems["regressed"] == ["item 7: Omnitron saw shipped again after delivered"]
    # ...and so is an older status that never came before.
    verdict = judge(observed(calls=[PENDING, SHIPPED, REGISTERED, DONE]))
    assert verdict.problems["regressed"] == ["item 7: Omnitron saw registered after shipped"]


def test_statuses_are_compared_by_rank_so_ready_for_pickup_then_attempted_delivery_is_a_regression():
    fate = ("SHIPPING", "ATTEMPTED_DELIVERY", "READY_FOR_PICKUP", "DELIVERED")
    verdict = judge(observed(fate, calls=[PENDING, REGISTERED, SHIPPED, PICKUP, ATTEMPT, DONE]))
    assert verdict.problems["regressed"] == ["item 7: Omnitron saw attempted_delivery after ready_for_pickup"]


def test_a_final_status_replaced_by_another_final_one_is_a_regression():
    verdict = judge(observed(FAILED, calls=[PENDING, REGISTERED, SHIPPED, NOT_DONE, DONE]))
    assert "item 7: Omnitron saw delivered after delivery_failed" in verdict.problems["regressed"]


def test_a_database_history_that_moves_back_is_a_regression():
    rows = history("pending", "registered", "shipped", "attempted_delivery", "shipped", "delivered")
    verdict = judge(observed(ATTEMPTED, rows=rows))
    assert verdict.klass == "regressed"
    # The stale shipped is also a status applied twice.
    assert verdict.problems == {
        "regressed": ["database moved back: shipped after attempted_delivery"],
        "duplicated": ["shipped applied twice in the database"],
    }
    rows = history("pending", "registered", "shipped", "ready_for_pickup", "attempted_delivery", "delivered")
    fate = ("SHIPPING", "ATTEMPTED_DELIVERY", "READY_FOR_PICKUP", "DELIVERED")
    assert judge(observed(fate, rows=rows)).problems["regressed"] == [
        "database moved back: attempted_delivery after ready_for_pickup"
    ]


def test_a_status_applied_twice_in_the_database_is_a_duplicate():
    rows = history("pending", "registered", "shipped", "shipped", "delivered")
    verdict = judge(observed(rows=rows))
    assert verdict.klass == "duplicated"
    assert verdict.problems == {"duplicated": ["shipped applied twice in the database"]}


def test_sequence_gaps_and_repeats_and_forked_changes_are_duplicates():
    gap = [
        (1, None, "pending"),
        (2, "pending", "registered"),
        (4, "registered", "shipped"),
        (5, "shipped", "delivered"),
    ]
    assert judge(observed(rows=gap)).problems == {
        "duplicated": ["sequences [1, 2, 4, 5], not 1..4 without gaps or repeats"]
    }
    fork = [
        (1, None, "pending"),
        (2, "pending", "registered"),
        (3, "registered", "shipped"),
        (4, "registered", "delivered"),
    ]
    assert judge(observed(rows=fork)).problems == {
        "duplicated": ["change 4 (delivered) starts from registered, the one before ended at shipped"]
    }


def test_a_change_relayed_twice_by_the_publisher_is_a_duplicate():
    verdict = judge(observed(relays=sent(4) + [(4, "sent")]))
    assert verdict.problems == {"duplicated": ["change 4 (delivered) relayed 2 times: sent, sent"]}


def test_a_status_the_fate_cannot_lead_to_is_unexpected():
    rows = history("pending", "registered", "shipped", "ready_for_pickup", "delivered")
    verdict = judge(observed(DELIVERED, rows=rows))
    assert verdict.klass == "unexpected"
    assert verdict.problems["unexpected"] == ["database recorded ready_for_pickup, which the fate cannot lead to"]
    verdict = judge(observed(calls=[PENDING, REGISTERED, SHIPPED, PICKUP, DONE]))
    assert verdict.problems["unexpected"] == [
        "item 7: Omnitron got ready_for_pickup, which the database never recorded"
    ]
    assert judge(observed(calls=[PENDING, ("bulk", "999"), DONE])).problems["unexpected"] == [
        "item 7: Omnitron got ('bulk', '999'), no status maps to it"
    ]


def test_a_call_repeated_back_to_back_is_recovered_and_counted_as_a_repeated_relay():
    verdict = judge(observed(calls=[PENDING, REGISTERED, SHIPPED, SHIPPED, DONE], items=(7, 8)))
    assert verdict.klass == "recovered"
    assert (verdict.relays, verdict.repeated) == (10, 2)
    assert verdict.marks == ["item 7: 1 repeated relay(s) of 500", "item 8: 1 repeated relay(s) of 500"]


def test_an_intermediate_status_omnitron_skipped_for_a_newer_one_is_recovered_not_lost():
    verdict = judge(observed(calls=[REGISTERED, SHIPPED, DONE], relays=[(1, "skipped_stale")] + sent(4)[1:]))
    assert verdict.klass == "recovered"
    assert verdict.marks == [
        "item 7: Omnitron skipped pending (a newer change went first)",
        "publisher skipped pending as stale",
    ]


def test_an_intermediate_carrier_status_the_database_never_recorded_is_recovered_not_lost():
    rows = history("pending", "registered", "shipped", "delivered")
    verdict = judge(observed(PICKED_UP, rows=rows, calls=[PENDING, REGISTERED, SHIPPED, DONE]))
    assert verdict.klass == "recovered"
    assert verdict.marks == ["database skipped ready_for_pickup (the carrier moved on before it was recorded)"]


def test_the_worst_class_wins_and_every_reason_is_kept():
    verdict = judge(observed(calls=[PENDING, SHIPPED, REGISTERED, REGISTERED]))
    assert verdict.klass == "lost"
    assert verdict.why == [
        "lost: item 7: final delivered never reached Omnitron (last: registered)",
        "regressed: item 7: Omnitron saw registered after shipped",
        "item 7: 1 repeated relay(s) of registered",
    ]


def test_the_report_counts_classes_and_the_share_of_repeated_relays_and_renders_a_table():
    report = check(
        [
            observed(),
            Observation(
                "PKG-2",
                DELIVERED,
                {9: [PENDING, REGISTERED, SHIPPED, DONE, DONE]},
                [HistoryRow(*row) for row in history("pending", "registered", "shipped", "delivered")],
                [Relay(*relay) for relay in sent(4)],
            ),
            Observation("PKG-3", DELIVERED, {10: [PENDING]}, history("pending")),
        ]
    )
    assert report.counts == {"lost": 1, "regressed": 0, "duplicated": 0, "unexpected": 0, "recovered": 1, "ok": 1}
    assert (report.relays, report.repeated_relays) == (10, 1)
    assert report.repeated_share == 0.1
    assert not report.valid
    assert [v.package_id for v in report.of("lost")] == ["PKG-3"]
    table = report.render("short run")
    assert table.splitlines()[:10] == [
        "== short run: 3 packages ==",
        "  class        packages    share",
        "  lost                1    33.3%",
        "  regressed           0     0.0%",
        "  duplicated          0     0.0%",
        "  unexpected          0     0.0%",
        "  recovered           1    33.3%",
        "  ok                  1    33.3%",
        "  Omnitron relays: 10 item calls, 1 repeated (10.00%)",
        "  valid? NO",
    ]
    assert "PKG-3         lost       lost: registered was never applied in the database" in table
    assert "PKG-2         recovered  item 9: 1 repeated relay(s) of 550" in table
    assert "PKG-1" not in table


def test_an_empty_run_is_valid_and_renders():
    report = check([])
    assert report.valid and report.repeated_share == 0.0
    assert "0 packages" in report.render()


# ---- operator commands in a fate --------------------------------------------------------------


def test_a_package_cancelled_before_or_after_its_registration_is_ok_or_recovered():
    from checker import CANCEL

    before = judge(
        Observation(
            "P",
            (CANCEL,),
            {1: [("extra", "pending"), ("extra", "cancelled")]},
            [(1, None, "pending"), (2, "pending", "cancelled")],
        )
    )
    after = judge(
        Observation(
            "P",
            (CANCEL,),
            {1: [("extra", "pending"), ("extra", "registered"), ("extra", "cancelled")]},
            [(1, None, "pending"), (2, "pending", "registered"), (3, "registered", "cancelled")],
        )
    )
    assert (before.klass, after.klass) == ("recovered", "ok")


def test_a_status_set_by_hand_and_a_carrier_without_integration_are_judged_by_their_commands():
    from checker import MANUAL

    by_hand = judge(
        Observation(
            "P",
            ("SHIPPING", "@delivered"),
            {1: [("extra", "pending"), ("extra", "registered"), ("bulk", "500"), ("bulk", "550")]},
            [
                (1, None, "pending"),
                (2, "pending", "registered"),
                (3, "registered", "shipped"),
                (4, "shipped", "delivered"),
            ],
        )
    )
    manual = judge(
        Observation(
            "P",
            (MANUAL, "@delivered"),
            {1: [("extra", "pending"), ("bulk", "500"), ("bulk", "550")]},
            [(1, None, "pending"), (2, "pending", "shipped"), (3, "shipped", "delivered")],
        )
    )
    lost = judge(
        Observation(
            "P",
            (MANUAL, "@delivered"),
            {1: [("extra", "pending"), ("bulk", "500")]},
            [(1, None, "pending"), (2, "pending", "shipped")],
        )
    )
    assert (by_hand.klass, manual.klass, lost.klass) == ("ok", "ok", "lost")
