"""Secrets never reach a log line: URL passwords and registered secret values are redacted."""
from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from shared.logging import configure_logging, get_logger, register_secrets
from shared.redaction import REDACTED, redact_text, secrets_in_url

TOKEN = "omnitron-t0ken-unit-test"
CARRIER_PASSWORD = "carrier-pa55-unit-test"


@pytest.fixture
def log_stream():
    """configure_logging writing JSON to a StringIO; the global logging setup is restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    register_secrets(TOKEN, CARRIER_PASSWORD)
    configure_logging("DEBUG", "json", stream=stream)
    yield stream
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_a_url_password_is_redacted_wherever_it_appears_in_a_structlog_line(log_stream):
    get_logger(service="packer").info(
        "connecting to amqp://oms:hunter22@rabbit:5672/prod",
        database="postgresql://app:pg-pass-123@db:5432/oms",
        urls=["amqp://a:list-pass@h//"],
        nested={"dsn": "postgresql://b:nested-pass@h/db"},
    )

    [line] = _lines(log_stream)
    assert line["event"] == "connecting to amqp://oms:***@rabbit:5672/prod"
    assert line["database"] == "postgresql://app:***@db:5432/oms"
    assert line["urls"] == ["amqp://a:***@h//"]
    assert line["nested"] == {"dsn": "postgresql://b:***@h/db"}
    assert line["service"] == "packer" and line["level"] == "info"
    for secret in ("hunter22", "pg-pass-123", "list-pass", "nested-pass"):
        assert secret not in log_stream.getvalue()


def test_a_registered_secret_is_redacted_from_structlog_values_and_messages(log_stream):
    get_logger().warning(f"Omnitron refused Token {TOKEN}", headers={"authorization": f"Token {TOKEN}"},
                         password=CARRIER_PASSWORD)

    [line] = _lines(log_stream)
    assert line["event"] == "Omnitron refused Token ***"
    assert line["headers"] == {"authorization": "Token ***"}
    assert line["password"] == REDACTED
    assert TOKEN not in log_stream.getvalue() and CARRIER_PASSWORD not in log_stream.getvalue()


def test_a_secret_inside_a_logged_exception_is_redacted(log_stream):
    try:
        raise ConnectionError(f"cannot reach amqp://oms:exc-pass-9@rabbit// with {TOKEN}")
    except ConnectionError:
        get_logger().exception("broker away")

    [line] = _lines(log_stream)
    assert "ConnectionError" in line["exception"]
    assert "exc-pass-9" not in log_stream.getvalue()
    assert TOKEN not in log_stream.getvalue()


def test_a_library_logging_through_stdlib_logging_is_redacted_too(log_stream):
    logging.getLogger("kombu.connection").warning("cannot connect to amqp://guest:stdlib-pass@rabbit:5672//")
    logging.getLogger("httpx").error("request with token %s failed", TOKEN)

    output = log_stream.getvalue()
    assert "WARNING kombu.connection cannot connect to amqp://guest:***@rabbit:5672//" in output
    assert "ERROR httpx request with token *** failed" in output
    assert "stdlib-pass" not in output and TOKEN not in output


def test_log_lines_below_the_configured_level_are_dropped(log_stream):
    configure_logging("WARNING", "json", stream=log_stream)

    get_logger().info("quiet")
    get_logger().warning("loud")

    assert [line["event"] for line in _lines(log_stream)] == ["loud"]


def test_secrets_in_url_finds_the_password_raw_and_percent_decoded():
    assert secrets_in_url("postgresql://oms:p%40ss%2Fword@db/oms") == ["p%40ss%2Fword", "p@ss/word"]
    assert secrets_in_url("amqp://guest:guest@localhost:5672//") == ["guest", "guest"]
    assert secrets_in_url("sqlite:///oms-shipments.sqlite3") == []
    assert secrets_in_url("memory://") == []
    assert secrets_in_url("http://[::1:bad") == []


def test_redact_text_keeps_the_user_and_host_of_a_url_and_hides_its_password():
    assert redact_text("postgresql+psycopg://oms:s3cret@db:5432/oms?x=1") == (
        "postgresql+psycopg://oms:***@db:5432/oms?x=1")
    assert redact_text("http://user@host/no-password") == "http://user@host/no-password"
    assert redact_text("nothing secret here", {"hunter2"}) == "nothing secret here"


def test_redact_text_hides_every_occurrence_of_a_registered_secret():
    assert redact_text("a hunter2 b hunter2", {"hunter2"}) == "a *** b ***"


def test_secrets_shorter_than_three_characters_are_not_redacted_to_keep_lines_readable():
    assert redact_text("status 42 ok", {"42"}) == "status 42 ok"
