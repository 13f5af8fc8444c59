"""shared.failure.decide: ack, retry on a delay tier, or dead-letter with the reason."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import DBAPIError, OperationalError

from shared.failure import Decision, DependencyDown, PermanentError, RetryPolicy, TransientError, Verdict, decide
from shared.http import PermanentHTTPError, TransientHTTPError

POLICY = RetryPolicy(max_attempts=5, delays_s=(1, 5, 30, 120))


def test_a_handler_that_succeeded_is_acked():
    assert decide(None, 0, POLICY) == Decision(Verdict.ACK)
    assert decide(None, 7, POLICY).verdict is Verdict.ACK


def test_a_permanent_error_is_dead_lettered_at_once_with_its_reason():
    decision = decide(PermanentError("unknown carrier 'ghost'"), 0, POLICY)

    assert decision == Decision(Verdict.DEAD_LETTER, reason="unknown carrier 'ghost'", error_class="PermanentError")


def test_a_carriers_4xx_is_dead_lettered_with_the_carriers_reason():
    decision = decide(PermanentHTTPError("E_ZIP: zipcode is invalid", 422), 0, POLICY)

    assert decision.verdict is Verdict.DEAD_LETTER
    assert decision.reason == "HTTP 422: E_ZIP: zipcode is invalid"
    assert decision.error_class == "PermanentError"  # the kind, as operators filter dead letters by it


@pytest.mark.parametrize("failed_attempts, tier", [(0, 1), (1, 5), (2, 30), (3, 120)])
def test_a_transient_error_is_retried_on_the_tier_of_its_attempt(failed_attempts, tier):
    decision = decide(TransientError("carrier answered 503"), failed_attempts, POLICY)

    assert decision == Decision(
        Verdict.RETRY, delay_s=tier, reason="carrier answered 503", error_class="TransientError"
    )


def test_the_last_tier_repeats_for_later_attempts():
    policy = RetryPolicy(max_attempts=50, delays_s=(1, 5))

    assert [decide(TransientError("x"), n, policy).delay_s for n in range(6)] == [1, 5, 5, 5, 5, 5]


def test_a_transient_error_is_dead_lettered_once_max_attempts_have_failed():
    decisions = [decide(TransientError("carrier answered 503"), n, POLICY) for n in range(POLICY.max_attempts)]

    assert [d.verdict for d in decisions] == [Verdict.RETRY] * 4 + [Verdict.DEAD_LETTER]
    assert decisions[-1].reason == "gave up after 5 attempts: carrier answered 503"
    assert decisions[-1].error_class == "TransientError"


def test_an_unexpected_error_is_retried_a_while_then_dead_lettered():
    assert decide(KeyError("boom"), 0, POLICY).verdict is Verdict.RETRY
    last = decide(KeyError("boom"), POLICY.max_attempts - 1, POLICY)

    assert last.verdict is Verdict.DEAD_LETTER
    assert last.error_class == "KeyError"


def test_an_error_without_a_message_is_named_by_its_class():
    assert decide(PermanentError(), 0, POLICY).reason == "PermanentError"


@pytest.mark.parametrize("failed_attempts", [0, 4, 5, 100, 10_000])
def test_a_dependency_that_is_down_never_exhausts_the_retries(failed_attempts):
    decision = decide(DependencyDown("Omnitron unavailable: HTTP 503"), failed_attempts, POLICY)

    assert decision.verdict is Verdict.RETRY
    assert decision.delay_s == POLICY.tier(failed_attempts + 1)


@pytest.mark.parametrize("failed_attempts", [0, 4, 5, 10_000])
def test_the_database_being_unreachable_never_exhausts_the_retries(failed_attempts):
    error = OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    assert decide(error, failed_attempts, POLICY).verdict is Verdict.RETRY


def test_a_database_connection_that_was_invalidated_never_exhausts_the_retries():
    error = DBAPIError("SELECT 1", {}, Exception("server closed the connection"), connection_invalidated=True)

    assert decide(error, 10_000, POLICY).verdict is Verdict.RETRY


def test_a_database_error_that_is_not_about_the_connection_does_exhaust():
    error = DBAPIError("INSERT", {}, Exception("value too long"), connection_invalidated=False)

    assert decide(error, POLICY.max_attempts - 1, POLICY).verdict is Verdict.DEAD_LETTER


def test_retry_after_picks_the_first_tier_at_least_that_long():
    decision = decide(TransientHTTPError("slow down", status=429, retry_after=20), 0, POLICY)

    assert decision.verdict is Verdict.RETRY
    assert decision.delay_s == 30
    assert decision.min_delay_s == 20


def test_a_retry_after_longer_than_every_tier_goes_round_the_longest_tier_until_it_has_passed():
    decision = decide(TransientError("slow down", retry_after_s=3600), 0, POLICY)

    assert (decision.delay_s, decision.min_delay_s, decision.wait_s) == (120, 120, 3600)


def test_a_retry_after_within_the_tiers_asks_for_no_further_wait():
    assert decide(TransientError("slow down", retry_after_s=20), 0, POLICY).wait_s == 0


@settings(max_examples=100, deadline=None)
@given(
    delays=st.lists(st.floats(0.1, 900), min_size=1, max_size=6).map(lambda d: tuple(sorted(d))),
    failed_attempts=st.integers(0, 30),
    retry_after=st.floats(0, 900),
)
def test_a_retry_tier_is_never_shorter_than_retry_after_nor_than_the_attempts_own_tier(
    delays, failed_attempts, retry_after
):
    policy = RetryPolicy(max_attempts=1000, delays_s=delays)
    decision = decide(TransientError("429", retry_after_s=retry_after), failed_attempts, policy)

    assert decision.delay_s in delays
    assert decision.delay_s >= policy.tier(failed_attempts + 1)
    if retry_after <= max(delays):
        assert decision.delay_s >= retry_after


@settings(max_examples=100, deadline=None)
@given(tier=st.floats(0.01, 3600), jitter=st.floats(0, 0.9), floor_share=st.floats(0, 1))
def test_jitter_never_exceeds_the_tier_nor_goes_below_retry_after(tier, jitter, floor_share):
    policy = RetryPolicy(max_attempts=5, delays_s=(tier,), jitter=jitter)
    at_least = tier * floor_share

    for _ in range(20):
        delay = policy.jittered(tier, at_least)
        assert max(at_least, tier * (1 - jitter)) - 1e-9 <= delay <= tier


@settings(max_examples=100, deadline=None)
@given(failed_attempts=st.integers(0, 20), retry_after=st.floats(0, 1000))
def test_a_jittered_retry_of_a_decision_honours_its_retry_after(failed_attempts, retry_after):
    decision = decide(TransientError("429", retry_after_s=retry_after), failed_attempts, POLICY)

    if decision.verdict is Verdict.RETRY:
        delay = POLICY.jittered(decision.delay_s, decision.min_delay_s)
        assert min(retry_after, max(POLICY.delays_s)) <= delay <= decision.delay_s
