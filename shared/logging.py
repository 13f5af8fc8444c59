"""structlog configuration: JSON lines (console on a TTY), secrets redacted by one processor.

Values in a line often come from messages (package ids, reasons, carrier texts). JSON
lines escape every control character by themselves; the console renderer prints text as
it is, so on a console each value is made visible first (shared/printable.py): nothing
a message holds can move the cursor, recolour the terminal or start a line of its own.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO, cast

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from shared.printable import visible
from shared.redaction import hidden_value, is_secret_name, redact_text
from shared.redaction import register_secrets as register_secrets  # the logging-side name callers use

TRACEBACK_KEYS = frozenset({"exception", "stack"})  # multi-line by nature, written by us


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            k: hidden_value(v) if isinstance(k, str) and is_secret_name(k) else _redact(v) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(v) for v in value)
    return value


def redact_secrets(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    return cast("EventDict", _redact(event_dict))


def _made_visible(value: Any, keep: str = "") -> Any:
    if isinstance(value, str):
        return visible(value, keep)
    if isinstance(value, dict):
        return {k: _made_visible(v, keep) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_made_visible(v, keep) for v in value)
    return value


def make_visible(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Console lines only: control characters written out (a traceback keeps its line breaks)."""
    return {key: _made_visible(value, "\n" if key in TRACEBACK_KEYS else "") for key, value in event_dict.items()}


_configured = False


def logging_configured() -> bool:
    return _configured


def configure_logging(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    global _configured
    stream = stream or sys.stderr
    as_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer = structlog.dev.ConsoleRenderer() if as_console else structlog.processors.JSONRenderer()
    # What every line goes through before it is rendered, ours and the libraries' alike.
    before_rendering: list[Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
        *([make_visible] if as_console else []),
    ]
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *before_rendering, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # Libraries (kombu, amqp, alembic, httpx) log through stdlib logging: their records are
    # rendered by the same processors, so the stream is one format (one JSON object per line)
    # with one redaction; the logger's name says whose line it is.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *before_rendering],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    _configured = True


def get_logger(**context: Any) -> Any:
    # Lazy: modules take their logger at import, before configure_logging has run.
    return structlog.get_logger(**context)
