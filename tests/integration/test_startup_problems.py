"""A start-up or configuration problem is one line that says what is wrong and what to do, exit code 2.

Each command runs as an operator would start it, against the local RabbitMQ and
PostgreSQL (a vhost and database of the test's own), with one thing wrong.
"""

from __future__ import annotations

import os
import socket
import subprocess
from importlib.metadata import version

import pytest

import harness
from harness import CARRIER_PASSWORD, OMNITRON_TOKEN

WRONG_PASSWORD = "wr0ng-pa55word-do-not-log"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once it is closed


def _with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    user = rest.split("@", 1)[0].split(":", 1)[0]
    return f"{scheme}://{user}:{password}@{rest.split('@', 1)[1]}"


@pytest.fixture
def environment(tmp_path, amqp_url, database_url):
    carriers = harness.write_carriers_file(
        tmp_path / "carriers.toml",
        {"sandbox": {"url": "http://127.0.0.1:1", "username": "user", "password": CARRIER_PASSWORD}},
    )
    plain = {key: value for key, value in os.environ.items() if not key.startswith("OMS_")}
    return {
        **plain,
        "OMS_AMQP_URL": amqp_url,
        "OMS_DATABASE_URL": database_url,
        "OMS_OMNITRON_URL": "http://127.0.0.1:1",
        "OMS_OMNITRON_TOKEN": OMNITRON_TOKEN,
        "OMS_CARRIERS_FILE": str(carriers),
        "OMS_METRICS_PORT": "0",
        "OMS_LOG_FORMAT": "json",
    }


def _cli(env: dict, *args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(harness.BIN), *args], env=env, capture_output=True, text=True, timeout=120, cwd=cwd)


def _fresh_database_url() -> str:
    return harness.database_url(f"oms_test_absent_{os.urandom(5).hex()}")


def _problems(tmp_path):
    """(what is wrong, the command, its environment changes, words the line must hold)."""
    (tmp_path / "invalid.toml").write_text('[carriers.sandbox]\nurl = 3\nusername = "u"\npassword = "p"\n')
    (tmp_path / "not-toml.toml").write_text("[carriers.sandbox\n")
    return {
        "no database": (
            ["db", "upgrade"],
            {"OMS_DATABASE_URL": _fresh_database_url()},
            ["does not exist", "db upgrade --create"],
        ),
        "no database for run": (
            ["run", "packer"],
            {"OMS_DATABASE_URL": _fresh_database_url()},
            ["does not exist", "db upgrade --create"],
        ),
        "unreachable database": (
            ["db", "upgrade"],
            {"OMS_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{_closed_port()}/oms"},
            ["cannot use the database", "OMS_DATABASE_URL"],
        ),
        "unreachable broker": (
            ["topology", "declare"],
            {"OMS_AMQP_URL": f"amqp://guest:{WRONG_PASSWORD}@127.0.0.1:{_closed_port()}/%2F"},
            ["cannot reach the broker", "OMS_AMQP_URL"],
        ),
        "unreachable broker for run": (
            ["run", "shipper"],
            {"OMS_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{_closed_port()}/%2F"},
            ["cannot reach the broker", "start RabbitMQ"],
        ),
        "missing carriers file": (
            ["run", "packer"],
            {"OMS_CARRIERS_FILE": str(tmp_path / "absent.toml")},
            ["absent.toml not found", "OMS_CARRIERS_FILE"],
        ),
        "invalid carriers file": (
            ["run", "tracker"],
            {"OMS_CARRIERS_FILE": str(tmp_path / "invalid.toml")},
            ["invalid.toml", "url must be a string"],
        ),
        "carriers file that is not TOML": (
            ["run", "shipper"],
            {"OMS_CARRIERS_FILE": str(tmp_path / "not-toml.toml")},
            ["not valid TOML"],
        ),
        "missing Omnitron URL": (["run", "omnitron-publisher"], {"OMS_OMNITRON_URL": None}, ["OMS_OMNITRON_URL"]),
        "invalid setting": (["run", "all"], {"OMS_PREFETCH": "many"}, ["OMS_PREFETCH", "valid integer"]),
    }


PROBLEMS = [  # the keys of _problems, which needs the test's directory to build
    "no database",
    "no database for run",
    "unreachable database",
    "unreachable broker",
    "unreachable broker for run",
    "missing carriers file",
    "invalid carriers file",
    "carriers file that is not TOML",
    "missing Omnitron URL",
    "invalid setting",
]


@pytest.mark.parametrize("problem", PROBLEMS)
def test_a_start_up_problem_is_one_line_saying_what_to_do_and_exit_code_2(environment, tmp_path, problem):
    args, changes, words = _problems(tmp_path)[problem]
    env = {**environment, **{key: value for key, value in changes.items() if value is not None}}
    for key in [key for key, value in changes.items() if value is None]:
        del env[key]

    result = _cli(env, *args, cwd=tmp_path)

    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"one line, not {len(lines)}:\n{result.stderr}"
    for word in words:
        assert word in lines[0], lines[0]
    for secret in (WRONG_PASSWORD, CARRIER_PASSWORD, OMNITRON_TOKEN):
        assert secret not in output


def test_a_broker_refusing_the_login_is_one_line_without_the_password(environment, amqp_url):
    result = _cli({**environment, "OMS_AMQP_URL": _with_password(amqp_url, WRONG_PASSWORD)}, "topology", "declare")

    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "refused the login" in result.stderr and "OMS_AMQP_URL" in result.stderr
    assert WRONG_PASSWORD not in result.stderr


def test_db_upgrade_create_creates_the_database_then_migrates_it_and_a_second_run_changes_nothing(environment):
    url = _fresh_database_url()
    env = {**environment, "OMS_DATABASE_URL": url}
    try:
        first = _cli(env, "db", "upgrade", "--create")
        assert first.returncode == 0, first.stderr
        assert "created the database" in first.stderr
        second = _cli(env, "db", "upgrade", "--create")
        assert second.returncode == 0, second.stderr
        assert "created" not in second.stderr and "at revision head" in second.stderr
        from services.migrations import current_revision

        assert current_revision(url) is not None
    finally:
        harness.drop_database(url.rsplit("/", 1)[1])


def test_the_version_option_prints_the_installed_version(environment):
    result = _cli(environment, "--version")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"oms-shipments {version('oms-shipments')}"


@pytest.mark.parametrize(
    "typed, offered",
    [
        ("", ["packer", "shipper", "tracker", "omnitron-publisher", "all"]),
        ("omn", ["omnitron-publisher"]),
        ("s", ["shipper"]),
    ],
)
def test_the_shell_completes_the_service_names_of_run(environment, typed, offered):
    env = {
        **environment,
        "_OMS_SHIPMENTS_COMPLETE": "complete_bash",
        "COMP_WORDS": f"oms-shipments run {typed}",
        "COMP_CWORD": "2",
    }

    result = _cli(env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == offered


@pytest.mark.parametrize("standin", ["carrier", "omnitron"])
def test_a_stand_in_whose_port_another_process_holds_says_so_in_one_line(environment, standin):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        result = _cli(environment, "standin", standin, "--port", str(port))

    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr
