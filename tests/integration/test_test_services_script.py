"""scripts/test-services.sh, which `make test` sources: the tests reach RabbitMQ and PostgreSQL
with the credentials of whoever serves them, the local services or docker-compose.yml's.

This machine has no Docker: where the script asks Docker something, a stand-in ``docker``
on the PATH answers as Docker would with docker-compose.yml's RabbitMQ and PostgreSQL
running (an earlier `make test` started them); their ports are the local services' here.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())

COMPOSE_RUNNING = """#!/bin/sh
case "$*" in
  info) exit 0 ;;
  "compose ps -q --status running rabbitmq"|"compose ps -q --status running postgres") echo 4f1c2a ;;
  "compose exec -T rabbitmq rabbitmq-diagnostics -q check_port_connectivity") exit 0 ;;
  "compose exec -T postgres pg_isready -q -h 127.0.0.1 -U "*) exit 0 ;;
  *) echo "unexpected docker $*" >&2; exit 64 ;;
esac
"""


def _sourced(path_prefix: list[Path]) -> tuple[int, dict[str, str], str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OMS_TEST_")}
    env["PATH"] = os.pathsep.join([*map(str, path_prefix), env["PATH"]])
    result = subprocess.run(
        ["bash", "-c", ". scripts/test-services.sh && _oms_services_ready && env"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    exported = dict(
        line.split("=", 1) for line in result.stdout.splitlines() if line.startswith("OMS_TEST_") and "=" in line
    )
    return result.returncode, exported, result.stderr


def _compose_credentials() -> dict[str, str]:
    rabbit = COMPOSE["services"]["rabbitmq"]["environment"]
    postgres = COMPOSE["services"]["postgres"]["environment"]
    return {
        "OMS_TEST_RABBIT_USER": rabbit["RABBITMQ_DEFAULT_USER"],
        "OMS_TEST_RABBIT_PASSWORD": rabbit["RABBITMQ_DEFAULT_PASS"],
        "OMS_TEST_PG_DSN": f"postgresql://{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}"
        f"@127.0.0.1:5432/{postgres['POSTGRES_DB']}",
        "OMS_TEST_RABBITMQCTL": "docker compose exec -T rabbitmq rabbitmqctl",
    }


def test_a_second_make_test_with_the_compose_services_already_up_uses_the_compose_credentials(tmp_path):
    (tmp_path / "docker").write_text(COMPOSE_RUNNING)
    (tmp_path / "docker").chmod(0o755)

    returncode, exported, stderr = _sourced([tmp_path])

    assert returncode == 0, stderr
    assert exported == _compose_credentials()


def test_the_local_services_are_used_with_the_local_credentials_where_docker_runs_nothing(tmp_path):
    (tmp_path / "docker").write_text(
        '#!/bin/sh\n[ "$1" = info ] && exit 0\n[ "$1 $2" = "compose ps" ] && exit 0\n'
        'echo "unexpected docker $*" >&2; exit 64\n'
    )
    (tmp_path / "docker").chmod(0o755)

    returncode, exported, stderr = _sourced([tmp_path])

    assert returncode == 0, stderr
    assert exported == {}, "the harness's defaults are the local services' credentials"


def test_the_credentials_the_script_gives_the_tests_are_the_ones_docker_compose_gives_its_services():
    script = (ROOT / "scripts" / "test-services.sh").read_text()
    rabbit = COMPOSE["services"]["rabbitmq"]["environment"]
    postgres = COMPOSE["services"]["postgres"]["environment"]
    for name, value in {
        "_COMPOSE_RABBIT_USER": rabbit["RABBITMQ_DEFAULT_USER"],
        "_COMPOSE_RABBIT_PASSWORD": rabbit["RABBITMQ_DEFAULT_PASS"],
        "_COMPOSE_PG_USER": postgres["POSTGRES_USER"],
        "_COMPOSE_PG_PASSWORD": postgres["POSTGRES_PASSWORD"],
        "_COMPOSE_PG_DATABASE": postgres["POSTGRES_DB"],
    }.items():
        assert f"\n{name}={value}\n" in script, name
