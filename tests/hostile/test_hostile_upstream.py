"""A hostile upstream (issue #10): odd messages published with pika into the running services,
beside normal traffic (docs/contract.md §1–2). Every consumed event is among them: PackagePacked,
PackageShipped, ShipmentStatusChanged and the operator commands (PackageCancelled,
ShipmentInfoUpdated, ShipmentStatusSet), a command naming a package of its own that is never
packed, so that one the contract accepts is kept for its packing ("applied": never dropped).

Each example publishes one to three odd messages and one normal package. It holds when
every odd message is applied or dead-lettered at once (``x-oms-attempts`` = 1) with a
reason, its dead letter tells the truth about it (forged ``x-oms-*`` headers neither read
nor copied), the worker went on with the normal package behind it, and no process exited.
Each test ends when every normal package reached its final Omnitron state and no work or
retry queue holds a message.

``[slice]`` runs in ``make test`` (a few hundred examples in all); ``[long]`` is the long
fuzzing run of ``make test-all`` (``-m fuzz``).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from hostile_messages import (
    COMMAND_KINDS,
    binary_mode_event,
    broken_body,
    encoded_body,
    forged_status_change,
    misrouted_event,
    odd_headers_on_a_bad_event,
    odd_headers_on_a_valid_event,
    odd_properties,
    spoiled_event,
)

RUNS = [pytest.param(1, id="slice"), pytest.param(20, id="long", marks=pytest.mark.fuzz)]
SLICE_MAX = 80  # the largest slice's examples


def run_examples(world, odd_messages, examples: int) -> None:
    # The slice reports a failing example as found (each shrinking step can wait 20 s for a
    # message that never settles); the long runs shrink it, for test_regressions.py.
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if examples > SLICE_MAX else [])

    @settings(
        max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True, phases=phases
    )
    @given(st.lists(odd_messages, min_size=1, max_size=3))
    def odd_messages_beside_a_normal_package(messages):
        world.try_messages(messages)

    odd_messages_beside_a_normal_package()
    world.finish()


@pytest.mark.parametrize("scale", RUNS)
def test_valid_events_with_odd_values_are_applied_or_dead_lettered_at_once(world, scale):
    run_examples(world, spoiled_event("packed") | spoiled_event("shipped"), 60 * scale)


@pytest.mark.parametrize("scale", RUNS)
def test_operator_commands_with_odd_values_are_kept_or_dead_lettered_at_once(world, scale):
    run_examples(world, st.one_of(*(spoiled_event(kind) for kind in COMMAND_KINDS)), 80 * scale)


@pytest.mark.parametrize("scale", RUNS)
def test_bodies_that_are_no_event_or_under_another_routing_key_are_dead_lettered_at_once(world, scale):
    run_examples(world, broken_body() | encoded_body() | misrouted_event(), 50 * scale)


# In full runs this category found a stall: refused messages arriving back to back made the
# consumer nest one confirm wait in another (tests/integration/test_refusals_in_a_burst.py).
@pytest.mark.parametrize("scale", RUNS)
def test_odd_properties_and_encodings_are_judged_by_the_contract_alone(world, scale):
    run_examples(world, odd_properties(), 80 * scale)


@pytest.mark.parametrize("scale", RUNS)
def test_headers_of_every_amqp_type_and_our_own_names_from_outside_change_nothing(world, scale):
    run_examples(world, odd_headers_on_a_valid_event() | odd_headers_on_a_bad_event(), 70 * scale)


@pytest.mark.parametrize("scale", RUNS)
def test_binary_mode_cloudevents_are_read_from_their_ce_headers(world, scale):
    run_examples(world, binary_mode_event(), 40 * scale)


@pytest.mark.parametrize("scale", RUNS)
def test_status_changes_the_services_never_recorded_are_dead_lettered(world, scale):
    run_examples(world, forged_status_change(), 20 * scale)
