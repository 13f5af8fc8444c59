"""A carrier's password by reference (password_env, password_file), so the carriers file can be a
ConfigMap; the inline form still works but warns; no error or log line ever shows the value."""

from __future__ import annotations

import io
import json

import pytest

from services.carriers.directory import CarrierDirectory, CarriersFileError, load_carriers
from shared.logging import configure_logging

SECRET = "s3cr3t-pa55word-never-shown"
BASE = """
[carriers.sandbox]
url = "http://127.0.0.1:8081"
username = "user"
"""


def write(tmp_path, extra: str):
    path = tmp_path / "carriers.toml"
    path.write_text(BASE + extra + "\n")
    return path


@pytest.fixture
def logged():
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream=stream)
    yield stream
    configure_logging("WARNING", "console")


def test_password_env_reads_the_password_from_the_named_variable(tmp_path, logged):
    configs = load_carriers(
        write(tmp_path, 'password_env = "OMS_CARRIER_SANDBOX_PASSWORD"'),
        environ={"OMS_CARRIER_SANDBOX_PASSWORD": SECRET},
    )

    assert configs["sandbox"].password == SECRET
    assert "carrier password is written" not in logged.getvalue()


@pytest.mark.parametrize("content", [SECRET, SECRET + "\n", SECRET + "\r\n"])
def test_password_file_reads_the_password_without_its_trailing_newline(tmp_path, content):
    secret_file = tmp_path / "sandbox-password"
    secret_file.write_bytes(content.encode())

    configs = load_carriers(write(tmp_path, f'password_file = "{secret_file}"'), environ={})

    assert configs["sandbox"].password == SECRET


def test_the_inline_password_still_works_with_a_warning_when_its_client_is_made_not_showing_it(tmp_path, logged):
    configs = load_carriers(write(tmp_path, f'password = "{SECRET}"'), environ={})
    assert configs["sandbox"].password == SECRET
    assert "carrier password is written" not in logged.getvalue()  # not before the start-up line

    directory = CarrierDirectory(configs)
    directory.client("sandbox")
    directory.client("sandbox")
    directory.close()

    lines = [json.loads(line) for line in logged.getvalue().splitlines()]
    (warning,) = [line for line in lines if "carrier password is written" in line["event"]]
    assert warning["level"] == "warning" and warning["carrier"] == "sandbox"
    assert SECRET not in logged.getvalue()


@pytest.mark.parametrize(
    "extra, environ, says",
    [
        ("", {}, "carrier 'sandbox': missing its password: password_env"),
        (f'password = "{SECRET}"\npassword_env = "X"', {"X": SECRET}, "password and password_env both given"),
        (
            'password_env = "OMS_CARRIER_SANDBOX_PASSWORD"',
            {},
            "password_env names OMS_CARRIER_SANDBOX_PASSWORD, which is not set or empty",
        ),
        ('password_env = "OMS_CARRIER_SANDBOX_PASSWORD"', {"OMS_CARRIER_SANDBOX_PASSWORD": ""}, "not set or empty"),
        ('password_env = "not a name"', {}, "password_env must name an environment variable"),
        ("password_env = 5", {}, "password_env must name an environment variable"),
        (
            'password_file = "/nonexistent/sandbox-password"',
            {},
            "password_file /nonexistent/sandbox-password cannot be read (No such file or directory)",
        ),
        ("password_file = 5", {}, "password_file must be a path"),
        ("password = 12345", {}, "password must be a string"),
    ],
)
def test_a_wrong_reference_is_refused_naming_the_variable_or_file_never_a_value(tmp_path, extra, environ, says):
    with pytest.raises(CarriersFileError) as refused:
        load_carriers(write(tmp_path, extra), environ=environ)

    assert says in str(refused.value)
    assert SECRET not in str(refused.value) and "12345" not in str(refused.value)


def test_an_empty_or_huge_password_file_is_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    huge = tmp_path / "huge"
    huge.write_bytes(b"x" * 70_000)

    with pytest.raises(CarriersFileError, match="is empty"):
        load_carriers(write(tmp_path, f'password_file = "{empty}"'), environ={})
    with pytest.raises(CarriersFileError, match="is over 65536 bytes"):
        load_carriers(write(tmp_path, f'password_file = "{huge}"'), environ={})


def test_a_password_by_reference_is_redacted_from_logs_once_the_services_know_it(tmp_path, logged):
    from services.runtime.bootstrap import bootstrap
    from services.runtime.settings import ServiceSettings as Settings
    from shared.logging import get_logger

    carriers = write(tmp_path, 'password_env = "OMS_CARRIER_SANDBOX_PASSWORD"')
    import os

    os.environ["OMS_CARRIER_SANDBOX_PASSWORD"] = SECRET
    try:
        runtime = bootstrap(
            Settings(
                amqp_url="memory://",
                database_url=f"sqlite:///{tmp_path / 'x.sqlite3'}",
                carriers_file=carriers,
                metrics_port=None,
            )
        )
    finally:
        del os.environ["OMS_CARRIER_SANDBOX_PASSWORD"]
    get_logger().warning("the carrier said", detail=f"bad password {SECRET}")
    runtime.engine.dispose()

    assert SECRET not in logged.getvalue()
