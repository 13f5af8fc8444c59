"""structlog configuration: JSON lines (console on a TTY), secrets redacted by one processor.

Values in a line often come from messages (package ids, reasons, carrier texts). JSON
lines escape every control character by themselves; the console renderer prints text as
it is, so on a console each value is made visible first (shared/printable.py): nothing
a message holds can move the cursor, recolour the terminal or start a line of its own.
"""
from __future__ import annotations

import logging
import sys

import structlog

from shared.printable import visible
from shared.redaction import hidden_value, is_secret_name, redact_text
from shared.redaction import register_secrets as register_secrets  # the logging-side name callers use

TRACEBACK_KEYS = frozenset({"exception", "stack"})  # multi-line by nature, written by us


def _redact(value):
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: hidden_value(v) if isinstance(k, str) and is_secret_name(k) else _redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(v) for v in value)
    return value


def redact_secrets(_logger, _name, event_dict: dict) -> dict:
    return _redact(event_dict)


def _made_visible(value, keep: str = ""):
    if isinstance(value, str):
        return visible(value, keep)
    if isinstance(value, dict):
        return {k: _made_visible(v, keep) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_made_visible(v, keep) for v in value)
    return value


def make_visible(_logger, _name, event_dict: dict) -> dict:
    """Console lines only: control characters written out (a traceback keeps its line breaks)."""
    return {key: _made_visible(value, "\n" if key in TRACEBACK_KEYS else "") for key, value in event_dict.items()}


def configure_logging(level: str = "INFO", fmt: str = "auto", stream=None) -> None:
    stream = stream or sys.stderr
    as_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer = structlog.dev.ConsoleRenderer() if as_console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            *([make_visible] if as_console else []),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # Libraries (kombu, amqp, alembic, httpx) log through stdlib logging: same redaction.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


class _RedactingFormatter(logging.Formatter):
    """A library's line, redacted, its control characters written out; a traceback after it
    keeps its line breaks, the message itself gets none."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return visible(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        return visible(redact_text(super().format(record)), keep="\n")


def get_logger(**context):
    # Lazy: modules take their logger at import, before configure_logging has run.
    return structlog.get_logger(**context)
