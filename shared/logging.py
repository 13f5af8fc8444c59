"""structlog configuration: JSON lines (console on a TTY), secrets redacted by one processor."""
from __future__ import annotations

import logging
import sys

import structlog

from shared.redaction import redact_text

_secrets: set[str] = set()


def register_secrets(*values: str | None) -> None:
    """Values that must never appear in a log line (passwords, tokens)."""
    _secrets.update(v for v in values if v)


def _redact(value):
    if isinstance(value, str):
        return redact_text(value, _secrets)
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(v) for v in value)
    return value


def redact_secrets(_logger, _name, event_dict: dict) -> dict:
    return {key: _redact(value) for key, value in event_dict.items()}


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
    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record), _secrets)


def get_logger(**context):
    # Lazy: modules take their logger at import, before configure_logging has run.
    return structlog.get_logger(**context)
