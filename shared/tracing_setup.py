"""Turning tracing on from the standard ``OTEL_*`` variables (shared/tracing.py has the hooks).

Off unless they ask for it; without the ``otel`` extra installed, asking only warns.
The SDK is imported here and only here, and only when tracing is asked for.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping
from typing import Any

from shared import tracing

#: Exporters OTEL_TRACES_EXPORTER may name: "otlp" (protocol from OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL,
#: http/protobuf by default, grpc if its package is installed) and "console"; "none" is off.
EXPORTERS = ("otlp", "console")


def wanted_exporters(environ: Mapping[str, str]) -> list[str]:
    """The exporters the standard variables ask for; empty: tracing stays off.

    ``OTEL_SDK_DISABLED=true`` turns it off; ``OTEL_TRACES_EXPORTER`` names exporters
    (``none`` for none); without it, an ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` means ``otlp``. Unlike the SDK's own default
    (``otlp`` always), nothing set means off: a service must not start sending spans to a
    collector nobody configured.
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = [name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()]
    if not named and (environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        named = ["otlp"]
    return [name for name in named if name != "none"]


def _exporter(name: str, environ: Mapping[str, str]) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"unknown OTEL_TRACES_EXPORTER {name[:40]!r} (this service knows {', '.join(EXPORTERS)})")
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = (protocol or "http/protobuf").strip().lower()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        raise ValueError(f"unsupported OTLP protocol {protocol[:40]!r} (http/protobuf or grpc)")
    return OTLPSpanExporter()


def start_from_environment(service_name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Turns tracing on when the ``OTEL_*`` variables ask for it and the SDK is installed.

    The SDK reads the rest of the standard variables itself: ``OTEL_RESOURCE_ATTRIBUTES``,
    ``OTEL_TRACES_SAMPLER`` and its argument, ``OTEL_BSP_*``, ``OTEL_EXPORTER_OTLP_*``
    (endpoint, headers, timeout). ``OTEL_SERVICE_NAME`` wins over ``service_name``.
    """
    from shared.logging import get_logger

    environ = os.environ if environ is None else environ
    exporters = wanted_exporters(environ)
    if not exporters:
        return False
    log = get_logger(component="tracing")
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "the OTEL_* variables ask for traces, but the OpenTelemetry SDK is not installed "
            "(pip install 'oms-shipments[otel]'); tracing stays off"
        )
        return False
    attributes = {}
    if environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = environ["OTEL_SERVICE_NAME"]
    elif "service.name=" not in environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        attributes["service.name"] = service_name
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in exporters:
        try:
            provider.add_span_processor(BatchSpanProcessor(_exporter(name, environ)))
        except (ImportError, ValueError) as exc:
            log.warning("a trace exporter cannot be used; it is left out", exporter=name[:40], error=str(exc))
    trace.set_tracer_provider(provider)
    tracing.use(provider)
    atexit.register(provider.shutdown)  # the last spans are sent before the process ends
    log.info("tracing on", exporters=exporters, service_name=provider.resource.attributes.get("service.name"))
    return True
