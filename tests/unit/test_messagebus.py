"""The pipeline: bytes → event (decoded once) → handler with its unit of work; HTTP failures are the policy's words already."""

from __future__ import annotations

import pytest
import structlog

from contracts import PackagePacked
from services.runtime.pipeline import Pipeline
from shared.delivery import Delivery
from shared.failure import DependencyDown, PermanentError, RetryPolicy, TransientError, Verdict, decide
from shared.http import PermanentHTTPError, TransientHTTPError

import contract_examples as examples


def dispatcher(handlers: dict):
    """The pipeline's decode and handle, for handlers that take the event alone."""

    def alone(handler):
        return lambda event, _uow: handler(event)

    pipeline = Pipeline("test", {t: alone(h) for t, h in handlers.items()}, unit_of_work=lambda event: None)
    return lambda delivery: pipeline.handle(pipeline.decode(delivery))


def delivery(
    body: bytes, content_type: str | None = "application/cloudevents+json", routing_key: str = "package.packed"
) -> Delivery:
    return Delivery(body=body, content_type=content_type, routing_key=routing_key, message_id="m-1")


PACKED_BYTES = examples.to_bytes(examples.example("PackagePacked"))


def failing(error: Exception):
    def handler(_event) -> None:
        raise error

    return handler


def test_a_valid_event_reaches_its_handler_with_the_typed_data_and_log_context():
    seen = []

    def handler(event) -> None:
        seen.append((event, structlog.contextvars.get_contextvars()))

    dispatcher({"PackagePacked": handler})(delivery(PACKED_BYTES))

    [(event, context)] = seen
    assert isinstance(event.data, PackagePacked)
    assert context == {
        "event_id": "7d0c6a1e-5a51-4a39-9d6c-1f1b2d2f4c10",
        "event_type": "PackagePacked",
        "package_id": "PKG-1001",
    }
    assert structlog.contextvars.get_contextvars() == {}


def test_bad_bytes_become_a_permanent_error_carrying_the_reason():
    handled = []

    with pytest.raises(PermanentError) as raised:
        dispatcher({"PackagePacked": handled.append})(delivery(b'{"specversion": "1.0", "id": '))

    assert str(raised.value).startswith("body is not JSON")
    assert handled == []
    assert decide(raised.value, 0, RetryPolicy(5, (1,))).verdict is Verdict.DEAD_LETTER


def test_a_wrong_content_type_becomes_a_permanent_error():
    with pytest.raises(PermanentError, match="unsupported content type 'text/xml'"):
        dispatcher({"PackagePacked": lambda e: None})(delivery(PACKED_BYTES, "text/xml"))


def test_an_event_type_this_queue_does_not_handle_is_a_permanent_error_naming_the_routing_key():
    shipped = examples.to_bytes(examples.example("PackageShipped"))

    with pytest.raises(
        PermanentError,
        match="PackageShipped events are not handled by this queue "
        r"\(routing key 'package.shipped'\)",
    ):
        dispatcher({"PackagePacked": lambda e: None})(delivery(shipped, routing_key="package.shipped"))


def test_a_handlers_transient_http_error_reaches_the_policy_as_it_is_with_its_retry_after():
    error = TransientHTTPError("carrier overloaded", 503, retry_after=45)
    handle = dispatcher({"PackagePacked": failing(error)})

    with pytest.raises(TransientError) as raised:
        handle(delivery(PACKED_BYTES))

    assert raised.value is error
    assert raised.value.retry_after_s == 45
    assert str(raised.value) == "HTTP 503: carrier overloaded"
    decision = decide(raised.value, 0, RetryPolicy(5, (1, 5, 30, 120)))
    assert (decision.verdict, decision.delay_s) == (Verdict.RETRY, 120)


def test_a_handlers_permanent_http_error_reaches_the_policy_as_it_is_with_the_peers_reason():
    handle = dispatcher({"PackagePacked": failing(PermanentHTTPError("E_ZIP: zipcode is invalid", 422))})

    with pytest.raises(PermanentError) as raised:
        handle(delivery(PACKED_BYTES))

    assert str(raised.value) == "HTTP 422: E_ZIP: zipcode is invalid"
    assert decide(raised.value, 0, RetryPolicy(5, (1,))).verdict is Verdict.DEAD_LETTER


def test_dependency_down_passes_through_unchanged_so_it_is_retried_without_limit():
    down = DependencyDown("Omnitron unavailable: HTTP 503", retry_after_s=5)
    handle = dispatcher({"PackagePacked": failing(down)})

    with pytest.raises(DependencyDown) as raised:
        handle(delivery(PACKED_BYTES))

    assert raised.value is down
    assert decide(raised.value, 10_000, RetryPolicy(5, (1,))).verdict is Verdict.RETRY
