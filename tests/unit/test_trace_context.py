"""Trace context is untrusted input: a valid one is kept, anything else is ignored, never refused,
and with tracing off it passes through unchanged into the events and requests it causes."""

from __future__ import annotations

import json

import pytest

from contracts import parse_event
from contracts.tracecontext import MAX_TRACESTATE, valid_traceparent, valid_tracestate
from shared import tracing, tracing_setup

import contract_examples as examples

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


def structured(**attributes) -> bytes:
    body = examples.example("PackageShipped")
    body.update(attributes)
    return json.dumps(body).encode()


def binary_headers(**extra) -> dict:
    body = examples.example("PackageShipped")
    headers = {f"ce-{name}": body[name] for name in ("specversion", "id", "source", "type", "time")}
    return {**headers, **extra}


BINARY_DATA = json.dumps(examples.example("PackageShipped")["data"]).encode()


def test_a_structured_events_trace_context_is_kept():
    event = parse_event(structured(traceparent=TRACEPARENT, tracestate=TRACESTATE))

    assert (event.traceparent, event.tracestate) == (TRACEPARENT, TRACESTATE)


def test_a_binary_events_ce_traceparent_is_kept():
    event = parse_event(
        BINARY_DATA, "application/json", binary_headers(**{"ce-traceparent": TRACEPARENT, "ce-tracestate": TRACESTATE})
    )

    assert (event.traceparent, event.tracestate) == (TRACEPARENT, TRACESTATE)


def test_the_amqp_traceparent_header_is_read_when_the_event_has_none():
    event = parse_event(
        structured(), "application/cloudevents+json", {"traceparent": TRACEPARENT, "tracestate": TRACESTATE}
    )

    assert (event.traceparent, event.tracestate) == (TRACEPARENT, TRACESTATE)


def test_the_events_own_attribute_wins_over_the_amqp_header():
    other = "00-11111111111111111111111111111111-2222222222222222-00"
    event = parse_event(structured(traceparent=TRACEPARENT), None, {"traceparent": other})

    assert event.traceparent == TRACEPARENT


MALFORMED = [
    "",
    "00",
    "junk",
    TRACEPARENT.upper(),
    TRACEPARENT + "-extra",
    TRACEPARENT[:-1],
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\x00",
    " " + TRACEPARENT,
    "x" * 100_000,
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0\u0661",
]


@pytest.mark.parametrize("value", MALFORMED + [5, 1.5, True, None, [TRACEPARENT], {"a": 1}], ids=lambda v: repr(v)[:30])
def test_a_malformed_traceparent_is_ignored_in_either_mode_and_the_event_is_applied(value):
    event = parse_event(structured(traceparent=value, tracestate=TRACESTATE))
    assert event.traceparent is None and event.tracestate is None
    assert event.data.package_id == "PKG-1001"

    headers = binary_headers(**{"ce-traceparent": value, "ce-tracestate": TRACESTATE})
    if value is None:
        del headers["ce-traceparent"]
    binary = parse_event(BINARY_DATA, "application/json", headers)
    assert binary.traceparent is None and binary.tracestate is None

    amqp = parse_event(structured(), None, {"traceparent": value})
    assert amqp.traceparent is None


@pytest.mark.parametrize(
    "value",
    [b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", 17, 2.5, None, {"v": TRACEPARENT}, [TRACEPARENT]],
    ids=lambda v: type(v).__name__,
)
def test_a_ce_traceparent_that_is_not_an_amqp_string_is_ignored_not_refused(value):
    event = parse_event(
        BINARY_DATA, "application/json", binary_headers(**{"ce-traceparent": value, "ce-tracestate": value})
    )

    assert event.traceparent is None and event.data.package_id == "PKG-1001"


def test_a_later_version_is_read_by_its_first_four_fields_and_carried_on_as_version_00():
    assert valid_traceparent("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-comes") == TRACEPARENT
    assert valid_traceparent("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01what") is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        ",",
        "UPPER=1",
        "a=",
        "=x",
        "a=b=c",
        "a" * 300 + "=1",
        ",".join(f"k{n}=v" for n in range(33)),
        "k=" + "v" * MAX_TRACESTATE,
        "a=\x00",
        "a=\u00e9",
        7,
    ],
)
def test_a_malformed_tracestate_is_dropped_and_the_traceparent_stays(value):
    assert valid_tracestate(value) is None
    event = parse_event(structured(traceparent=TRACEPARENT, tracestate=value))
    assert (event.traceparent, event.tracestate) == (TRACEPARENT, None)


def test_a_tracestate_without_its_traceparent_is_dropped():
    assert parse_event(structured(tracestate=TRACESTATE)).tracestate is None


def test_a_valid_tracestate_is_kept_without_the_spaces_around_its_members():
    assert (
        valid_tracestate(" congo=t61rcWkgMzE , rojo=00f067aa0ba902b7,, a@b=c")
        == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7,a@b=c"
    )


def test_the_services_events_carry_the_context_they_were_parsed_with():
    event = parse_event(structured(traceparent=TRACEPARENT, tracestate=TRACESTATE))

    again = parse_event(event.to_bytes())

    assert (again.traceparent, again.tracestate) == (TRACEPARENT, TRACESTATE)
    assert b'"traceparent"' not in parse_event(structured()).to_bytes()


# ---- tracing off: the context passes through ------------------------------------------


@pytest.fixture(autouse=True)
def tracing_off():
    tracing.use(None)
    yield


def test_off_an_event_without_context_changes_nothing():
    event = parse_event(structured())
    caused = parse_event(structured())
    request: dict = {"headers": {"accept": "application/json"}}

    with tracing.handling(event, "package.shipped"):
        assert tracing.stamped(caused) is caused
        with tracing.http_call("GET", "http://carrier/shipments/1", request) as call:
            call.answered(200)

    assert request == {"headers": {"accept": "application/json"}}


def test_off_the_handled_events_context_goes_on_every_event_and_request_it_causes():
    event = parse_event(structured(traceparent=TRACEPARENT, tracestate=TRACESTATE))
    caused = parse_event(structured())
    request: dict = {"headers": {"accept": "application/json"}}

    with tracing.handling(event, "package.shipped"):
        stamped = tracing.stamped(caused)
        with tracing.http_call("POST", "http://carrier/shipments", request):
            pass

    assert (stamped.traceparent, stamped.tracestate) == (TRACEPARENT, TRACESTATE)
    assert request["headers"] == {"accept": "application/json", "traceparent": TRACEPARENT, "tracestate": TRACESTATE}
    assert tracing.stamped(caused) is caused  # nothing held once the handling ended


def test_a_stored_events_context_becomes_its_amqp_headers():
    stored = parse_event(structured(traceparent=TRACEPARENT, tracestate=TRACESTATE)).to_bytes()

    assert tracing.message_headers(stored) == {"traceparent": TRACEPARENT, "tracestate": TRACESTATE}
    assert tracing.message_headers(parse_event(structured()).to_bytes()) is None
    assert tracing.message_headers(b'{"traceparent":"junk"}') is None


@pytest.mark.parametrize(
    "environ, wanted",
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, []),
    ],
)
def test_tracing_is_on_only_when_the_standard_variables_ask_for_it(environ, wanted):
    assert tracing_setup.wanted_exporters(environ) == wanted


def test_nothing_set_leaves_tracing_off():
    assert tracing_setup.start_from_environment("oms-shipments-packer", {}) is False
    assert not tracing.enabled()


def test_without_the_sdk_nothing_of_opentelemetry_is_needed_and_asking_for_traces_only_warns(tmp_path):
    """The base install has no OpenTelemetry: the services import none of it and run the same."""
    script = tmp_path / "no_sdk.py"
    script.write_text(f"""
import sys
sys.modules["opentelemetry"] = None  # any import of it fails, as without the otel extra
import json
from contracts import parse_event
from shared import tracing, tracing_setup
import services.runtime.pipeline, services.domain.uow, shared.relay, shared.http, services.carriers.async_client
body = {json.dumps(json.dumps({**examples.example("PackageShipped"), "traceparent": TRACEPARENT}))}
event = parse_event(body.encode())
request = {{}}
with tracing.handling(event, "package.shipped"):
    stamped = tracing.stamped(parse_event(body.encode()))
    with tracing.http_call("GET", "http://carrier/x", request):
        pass
assert request["headers"]["traceparent"] == event.traceparent == stamped.traceparent
assert tracing_setup.start_from_environment("oms-shipments-packer", {{"OTEL_TRACES_EXPORTER": "otlp"}}) is False
assert not [name for name in sys.modules if name.startswith("opentelemetry.")]
print("ok")
""")
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout and "OpenTelemetry SDK is not installed" in result.stdout + result.stderr


def test_the_standard_variables_turn_spans_on_and_name_the_service(tmp_path):
    """In a process of its own (the SDK's tracer provider is global): console exporter, the
    service name from OTEL_SERVICE_NAME, a span of a handled event written at exit."""
    import subprocess
    import sys

    script = tmp_path / "on.py"
    script.write_text(f"""
import json
from contracts import parse_event
from shared import tracing, tracing_setup
assert tracing_setup.start_from_environment("oms-shipments-packer",
                                            {{"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "svc-under-test"}})
assert tracing.enabled()
body = {json.dumps(json.dumps({**examples.example("PackageShipped"), "traceparent": TRACEPARENT}))}
with tracing.handling(parse_event(body.encode()), "package.shipped"):
    pass
""")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    spans = result.stdout
    assert '"name": "process package.shipped"' in spans and '"name": "handle PackageShipped"' in spans
    assert '"service.name": "svc-under-test"' in spans and TRACEPARENT.split("-")[1] in spans
