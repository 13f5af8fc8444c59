"""What tracing costs per message: off (the default), off with an upstream's trace context
passing through, and on (the SDK, spans to an exporter that drops them).

    .venv/bin/python -m benchmarks.tracing [--messages 200000]

One message's hooks, as the services run them: ``handling`` around the handler, ``stamped``
for the one event it causes, ``http_call`` for one request, ``message_headers`` and
``traced_publish`` when the relay publishes the event. Beside them: the envelope's
validation with and without its two trace attributes declared (the same attributes in),
and a whole ``parse_event`` of the contract's PackagePacked for scale. In process, no
broker or database: these are the hooks' own costs. docs/benchmarks.md, "Tracing off".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pydantic import create_model

from contracts import CloudEvent, parse_event
from shared import tracing
from shared.confirms import Outgoing

EXAMPLE = Path(__file__).parents[1] / "docs" / "examples" / "events.jsonl"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _per_call_ns(fn, count: int) -> float:
    return _interleaved([fn], count)[0]


def _interleaved(fns: list, count: int, rounds: int = 7) -> list[float]:
    """The best of ``rounds`` for each function, measured in turns so that the machine's load
    falls on all of them alike."""
    best = [float("inf")] * len(fns)
    for fn in fns:
        fn()  # warm
    for _ in range(rounds):
        for index, fn in enumerate(fns):
            started = time.perf_counter_ns()
            for _ in range(count):
                fn()
            best[index] = min(best[index], (time.perf_counter_ns() - started) / count)
    return best


def _one_message(event, caused, body: bytes):
    def publish(messages):
        return [True] * len(messages)

    def run() -> None:
        request: dict = {"headers": {"accept": "application/json"}}
        with tracing.handling(event, "package.packed"):
            tracing.stamped(caused)
            with tracing.http_call("POST", "http://127.0.0.1:8081/shipments", request) as call:
                call.answered(201)
        tracing.traced_publish(
            publish,
            [Outgoing(body, "shipment.status_changed.pending", caused.id, caused.type, tracing.message_headers(body))],
        )

    return run


def _bare_message(event, caused, body: bytes):
    """The same work without any hook: the baseline the hooks are measured against."""

    def publish(messages):
        return [True] * len(messages)

    def run() -> None:
        request: dict = {"headers": {"accept": "application/json"}}
        publish([Outgoing(body, "shipment.status_changed.pending", caused.id, caused.type, None)])
        del request

    return run


def measure(count: int) -> dict[str, float]:
    raw = json.loads(EXAMPLE.read_text().splitlines()[0])
    plain = json.dumps(raw).encode()
    traced = json.dumps({**raw, "traceparent": TRACEPARENT, "tracestate": "upstream=erp"}).encode()
    event, event_traced = parse_event(plain), parse_event(traced)
    caused = parse_event(plain)
    figures = {}
    tracing.use(None)
    with tracing.handling(event_traced, "package.packed"):
        stored = tracing.stamped(caused)
    bare, off, passed = _interleaved(
        [
            _bare_message(event, caused, caused.to_bytes()),
            _one_message(event, caused, caused.to_bytes()),
            _one_message(event_traced, caused, stored.to_bytes()),
        ],
        count,
    )
    figures["hooks, tracing off, no trace context (ns/message)"] = off - bare
    figures["hooks, tracing off, upstream context passed through (ns/message)"] = passed - bare

    fields = {
        name: (info.annotation, info)
        for name, info in CloudEvent.model_fields.items()
        if name not in ("traceparent", "tracestate")
    }
    untraced_model = create_model("UntracedCloudEvent", __config__=CloudEvent.model_config, **fields)
    attributes = json.loads(plain)
    envelope_with, envelope_without = _interleaved(
        [lambda: CloudEvent.model_validate(attributes), lambda: untraced_model.model_validate(attributes)], count
    )
    figures["envelope validation, trace attributes declared (ns)"] = envelope_with
    figures["envelope validation, without them (ns)"] = envelope_without
    figures["parse_event of PackagePacked, for scale (ns)"] = _per_call_ns(lambda: parse_event(plain), count // 10)

    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
    except ImportError:
        return figures

    class Dropping(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Dropping()))
    tracing.use(provider)
    try:
        figures["hooks, tracing on: 5 spans (ns/message)"] = (
            _per_call_ns(_one_message(event_traced, caused, stored.to_bytes()), count // 10) - bare
        )
    finally:
        tracing.use(None)
        provider.shutdown()
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tracing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    args = parser.parse_args(argv)
    for name, value in measure(args.messages).items():
        print(f"| {name} | {value:,.0f} |")


if __name__ == "__main__":
    main()
