"""Settings come from OMS_* environment variables (and an optional .env); secrets() lists every secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.runtime.settings import ServiceSettings as Settings


@pytest.fixture(autouse=True)
def no_oms_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("OMS_"):
            monkeypatch.delenv(name)


def test_oms_environment_variables_are_read(monkeypatch):
    monkeypatch.setenv("OMS_AMQP_URL", "amqp://oms:amqp-pa55@rabbit:5672/prod")
    monkeypatch.setenv("OMS_DATABASE_URL", "postgresql://oms:db-pa55@pg:5432/oms")
    monkeypatch.setenv("OMS_OMNITRON_URL", "https://omnitron.example")
    monkeypatch.setenv("OMS_OMNITRON_TOKEN", "omnitron-t0ken")
    monkeypatch.setenv("OMS_CARRIERS_FILE", "/etc/oms/carriers.toml")
    monkeypatch.setenv("OMS_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("OMS_RETRY_DELAYS_S", "[0.5, 2, 10]")
    monkeypatch.setenv("OMS_QUEUE_TYPE", "quorum")
    monkeypatch.setenv("OMS_TRACKER_LEASE_S", "15")

    settings = Settings(_env_file=None)

    assert settings.amqp_url.get_secret_value() == "amqp://oms:amqp-pa55@rabbit:5672/prod"
    assert settings.database_url.get_secret_value() == "postgresql://oms:db-pa55@pg:5432/oms"
    assert settings.omnitron_url == "https://omnitron.example"
    assert settings.omnitron_token.get_secret_value() == "omnitron-t0ken"
    assert settings.carriers_file == Path("/etc/oms/carriers.toml")
    assert settings.max_attempts == 7
    assert settings.retry_delays_s == [0.5, 2, 10]
    assert settings.queue_type == "quorum"
    assert settings.tracker_lease_s == 15


def test_secrets_lists_the_amqp_password_the_database_password_and_the_omnitron_token(monkeypatch):
    monkeypatch.setenv("OMS_AMQP_URL", "amqp://oms:amqp-pa55@rabbit:5672/prod")
    monkeypatch.setenv("OMS_DATABASE_URL", "postgresql://oms:db%40pa55@pg:5432/oms")
    monkeypatch.setenv("OMS_OMNITRON_TOKEN", "omnitron-t0ken")

    secrets = Settings(_env_file=None).secrets()

    assert {"amqp-pa55", "db%40pa55", "db@pa55", "omnitron-t0ken"} == set(secrets)


def test_secrets_do_not_show_in_the_settings_repr(monkeypatch):
    monkeypatch.setenv("OMS_AMQP_URL", "amqp://oms:amqp-pa55@rabbit:5672/prod")
    monkeypatch.setenv("OMS_OMNITRON_TOKEN", "omnitron-t0ken")

    shown = repr(Settings(_env_file=None))

    assert "amqp-pa55" not in shown and "omnitron-t0ken" not in shown


def test_without_environment_the_contracts_defaults_apply():
    settings = Settings(_env_file=None)

    assert settings.amqp_url.get_secret_value() == "amqp://guest:guest@localhost:5672//"
    assert settings.database_url.get_secret_value().startswith("sqlite:///")
    assert settings.carriers_file == Path("carriers.toml")
    assert settings.omnitron_url is None and settings.omnitron_token is None
    assert set(settings.secrets()) == {"guest"}


def test_a_dotenv_file_is_read_and_the_environment_wins_over_it(tmp_path, monkeypatch):
    dotenv = tmp_path / ".env"
    dotenv.write_text("OMS_OMNITRON_URL=https://from-dotenv.example\nOMS_PREFETCH=8\n")
    monkeypatch.setenv("OMS_PREFETCH", "64")

    settings = Settings(_env_file=dotenv)

    assert settings.omnitron_url == "https://from-dotenv.example"
    assert settings.prefetch == 64


@pytest.mark.parametrize(
    "name, value",
    [
        ("OMS_RETRY_DELAYS_S", "[]"),
        ("OMS_RETRY_DELAYS_S", "[5, 0]"),
        ("OMS_QUEUE_TYPE", "lazy"),
        ("OMS_MAX_ATTEMPTS", "0"),
        ("OMS_LOG_FORMAT", "xml"),
    ],
)
def test_an_invalid_setting_is_refused_naming_it(monkeypatch, name, value):
    monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError, match=name.removeprefix("OMS_").lower()):
        Settings(_env_file=None)


def test_an_empty_metrics_port_disables_the_endpoints(monkeypatch):
    from services.runtime.settings import ServiceSettings as Settings

    monkeypatch.setenv("OMS_METRICS_PORT", "")
    assert Settings().metrics_port is None
    monkeypatch.setenv("OMS_METRICS_PORT", "9300")
    assert Settings().metrics_port == 9300
