"""Secrets never reach a log line: URL passwords and registered secret values are redacted."""

from __future__ import annotations

import io
import json
import logging
import re
import time

import pytest
import structlog

from shared import redaction
from shared.logging import configure_logging, get_logger, register_secrets
from shared.redaction import REDACTED, redact_text, secrets_in_url

TOKEN = "omnitron-t0ken-unit-test"
CARRIER_PASSWORD = "carrier-pa55-unit-test"


@pytest.fixture(autouse=True)
def no_secrets_registered_by_other_tests(monkeypatch):
    """The registry is the process's: other tests' passwords ("secret") must not redact these texts."""
    monkeypatch.setattr(redaction, "_registered", frozenset())


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
    get_logger().warning(
        f"Omnitron refused Token {TOKEN}", headers={"authorization": f"Token {TOKEN}"}, password=CARRIER_PASSWORD
    )

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
    kombu_line, httpx_line = _lines(log_stream)
    assert kombu_line["event"] == "cannot connect to amqp://guest:***@rabbit:5672//"
    assert (kombu_line["level"], kombu_line["logger"]) == ("warning", "kombu.connection")
    assert (httpx_line["event"], httpx_line["level"], httpx_line["logger"]) == (
        "request with token *** failed",
        "error",
        "httpx",
    )
    assert "stdlib-pass" not in output and TOKEN not in output


@pytest.mark.parametrize("library", ["alembic.runtime.migration", "kombu.connection", "amqp"])
def test_a_library_record_is_one_json_line_of_the_same_stream_with_the_same_redaction(log_stream, library):
    get_logger().warning("ours", url="amqp://guest:ours-pass@rabbit//")
    try:
        raise ConnectionError(f"refused with token {TOKEN}\nsecond line")
    except ConnectionError:
        logging.getLogger(library).exception("cannot connect to postgresql://oms:db-pass@db/oms, %s", "giving up")

    lines = log_stream.getvalue().splitlines()
    assert len(lines) == 2, "a library's record and its traceback are one line, as ours are"
    ours, theirs = _lines(log_stream)
    assert set(ours) - {"url"} <= set(theirs), "the same fields as our own lines"
    assert theirs["event"] == "cannot connect to postgresql://oms:***@db/oms, giving up"
    assert (theirs["logger"], theirs["level"]) == (library, "error")
    assert "ConnectionError: refused with token ***" in theirs["exception"]
    assert TOKEN not in log_stream.getvalue() and "db-pass" not in log_stream.getvalue()


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
        "postgresql+psycopg://oms:***@db:5432/oms?x=1"
    )
    assert redact_text("http://user@host/no-password") == "http://user@host/no-password"
    assert redact_text("nothing secret here", {"hunter2"}) == "nothing secret here"


def test_redact_text_hides_every_occurrence_of_a_registered_secret():
    assert redact_text("a hunter2 b hunter2", {"hunter2"}) == "a *** b ***"


def test_secrets_shorter_than_three_characters_are_not_redacted_to_keep_lines_readable():
    assert redact_text("status 42 ok", {"42"}) == "status 42 ok"


def test_a_registered_secret_is_redacted_by_redact_text_alone_as_the_dead_letter_reason_is():
    register_secrets("registered-only-s3cret")

    assert redact_text("carrier said: bad credentials registered-only-s3cret") == "carrier said: bad credentials ***"


def test_an_authorization_header_keeps_its_scheme_and_loses_its_credentials():
    assert redact_text("Authorization: Basic dXNlcjpwYXNzd29yZA==") == "Authorization: Basic ***"
    assert redact_text("{'authorization': 'Token abc123def456'}") == "{'authorization': 'Token ***'}"
    assert redact_text('headers={"Authorization": "Bearer eyJhbGciOi.eyJzdWIi.c2ln"}') == (
        'headers={"Authorization": "Bearer ***"}'
    )
    assert redact_text("proxy-authorization=opaque-value") == "proxy-authorization=***"


def test_basic_and_token_credentials_are_hidden_without_the_header_name_and_prose_is_left_alone():
    assert redact_text("sent Basic dXNlcjpwYXNzd29yZA== to the carrier") == "sent Basic *** to the carrier"
    assert redact_text("Omnitron refused Token 0a1b2c3d4e5f") == "Omnitron refused Token ***"
    assert redact_text("Token expired; Basic authentication failed") == "Token expired; Basic authentication failed"


def test_a_url_password_holding_an_at_sign_is_hidden_whole():
    assert (
        redact_text("cannot reach amqp://oms:p@ss@rabbit:5672/prod") == "cannot reach amqp://oms:***@rabbit:5672/prod"
    )


def test_secrets_in_query_strings_dsns_and_dumped_mappings_are_hidden():
    assert redact_text("GET https://h.example/x?access_token=abc123&page=2&sig=zz9") == (
        "GET https://h.example/x?access_token=***&page=2&sig=***"
    )
    assert redact_text("host=db port=5432 password=hunter22 dbname=oms") == "host=db port=5432 password=*** dbname=oms"
    assert redact_text('{"user": "ada", "password": "pw-123", "client_secret": "cs-9"}') == (
        '{"user": "ada", "password": "***", "client_secret": "***"}'
    )


def test_a_field_named_like_a_secret_is_redacted_whatever_it_holds(log_stream):
    get_logger().info(
        "configured",
        password="short",
        api_key="k",
        headers={"Authorization": "Basic Zm9v"},
        routing_key="package.packed",
    )

    [line] = _lines(log_stream)
    assert (line["password"], line["api_key"]) == (REDACTED, REDACTED)
    assert line["headers"] == {"Authorization": "Basic ***"}
    assert line["routing_key"] == "package.packed"


HOSTILE = "PKG-1\x1b[2J\x1b]0;owned\x07\r\nFAKE level=error\u202e\x9b31m"


def test_a_console_line_writes_out_every_control_character_a_value_holds():
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("INFO", "console", stream=stream)
        get_logger().info(f"received {HOSTILE}", package_id=HOSTILE)
        logging.getLogger("kombu").warning("library says %s", HOSTILE)
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)

    output = stream.getvalue()
    without_our_colours = re.sub(r"\x1b\[[0-9;]*m", "", output)
    assert "\x1b" not in without_our_colours and "\x07" not in output and "\r" not in output
    assert "\u202e" not in output and "\x9b" not in output
    assert len(output.splitlines()) == 2, "a value must not start a line of its own"
    assert "PKG-1\\x1b[2J\\x1b]0;owned\\x07\\r\\nFAKE" in without_our_colours


def test_a_json_line_escapes_control_characters_by_itself(log_stream):
    get_logger().info("received", package_id=HOSTILE)

    assert len(log_stream.getvalue().splitlines()) == 1
    assert "\x1b" not in log_stream.getvalue() and "\x9b" not in log_stream.getvalue()
    assert _lines(log_stream)[0]["package_id"] == HOSTILE


def test_a_dead_letter_reason_is_redacted_like_a_log_line():
    from test_batch_worker import Run, subscription

    from shared import naming
    from shared.batch import Handled
    from shared.failure import PermanentError

    register_secrets("dlq-registered-pa55")
    run = Run(subscription())
    run.publish(b"poison")
    reason = (
        "carrier refused dlq-registered-pa55 with Authorization: Basic dXNlcjpwYXNz "
        "for amqp://oms:pw-in-url@rabbit// and https://h.example/x?token=t0k3n"
    )
    dead: list = []
    run.work(
        lambda handle, deliveries: [Handled(PermanentError(reason), 0.0) for _ in deliveries],
        until=lambda: dead.extend(run.take(run.queue + ".dlq")) or dead,
    )

    assert dead[0].headers[naming.HEADER_ERROR_MESSAGE] == (
        "carrier refused *** with Authorization: Basic *** for amqp://oms:***@rabbit// and "
        "https://h.example/x?token=***"
    )


@pytest.mark.parametrize(
    "text",
    [
        "a" * 200_000 + "://",  # a scheme-like run before the only "://"
        "a.a-" * 50_000 + "=",  # word boundaries everywhere before one "="
        "token" * 40_000 + "=",
        "x://y:" * 40_000,  # URL starts that never reach an "@"
        '"password"' * 20_000 + ":",
    ],
)
def test_a_long_hostile_text_is_redacted_in_time_proportional_to_its_length(text):
    started = time.monotonic()
    redact_text(text)
    assert time.monotonic() - started < 5, "redaction must not backtrack over the whole text"
