"""Fixtures: every test that touches RabbitMQ or PostgreSQL gets its own vhost and database.

A missing service fails the test with the command that starts it; nothing is skipped.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from services.standins.omnitron import OmnitronStandIn
from services.standins.sandbox_carrier import SandboxCarrier

import harness
from harness import CARRIER_PASSWORD, OMNITRON_TOKEN  # noqa: F401  (names the tests of this folder use)


@pytest.fixture(scope="session")
def migrated_template():
    from services.migrations import upgrade

    name = harness.create_database()
    upgrade(harness.database_url(name))
    yield name
    harness.drop_database(name)


@pytest.fixture
def database_url(migrated_template):
    name = harness.create_database(template=migrated_template)
    yield harness.database_url(name)
    harness.drop_database(name)


@pytest.fixture
def amqp_url():
    vhost = harness.create_vhost()
    yield harness.amqp_url(vhost)
    harness.delete_vhost(vhost)


@pytest.fixture
def carrier():
    with SandboxCarrier(username="user", password=CARRIER_PASSWORD) as server:
        yield server


@pytest.fixture
def omnitron():
    with OmnitronStandIn(token=OMNITRON_TOKEN) as server:
        yield server


class Pipeline:
    """The services as separate ``oms-shipments run`` processes, wired to one vhost and database."""

    def __init__(
        self,
        tmp_path: Path,
        amqp_url: str,
        database_url: str,
        carrier,
        omnitron,
        poll_interval_s: float,
        extra_env: dict[str, str] | None = None,
        max_requests_per_s: float = 500,
    ):
        self.tmp_path = tmp_path
        self.amqp_url = amqp_url
        self.database_url = database_url
        self.carrier = carrier
        self.omnitron = omnitron
        carriers_file = harness.write_carriers_file(
            tmp_path / "carriers.toml",
            {
                "sandbox": {
                    "url": carrier.url,
                    "username": "user",
                    "password": CARRIER_PASSWORD,
                    "api_version": "1",
                    "poll_interval_s": poll_interval_s,
                    "max_requests_per_s": max_requests_per_s,
                }
            },
        )
        self.env = {
            **os.environ,
            "OMS_AMQP_URL": amqp_url,
            "OMS_DATABASE_URL": database_url,
            "OMS_OMNITRON_URL": omnitron.url,
            "OMS_OMNITRON_TOKEN": OMNITRON_TOKEN,
            "OMS_CARRIERS_FILE": str(carriers_file),
            "OMS_TRACKER_IDLE_S": "0.1",
            "OMS_RETRY_DELAYS_S": "[0.5, 1, 2]",
            "OMS_LOG_FORMAT": "json",
            "OMS_LOG_LEVEL": "INFO",
            **(extra_env or {}),
        }
        self.processes: list[harness.ServiceProcess] = []
        self.cli("topology", "declare")
        self.publisher = harness.RawPublisher(amqp_url)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([str(harness.BIN), *args], env=self.env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"oms-shipments {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    def start(self, service: str, copies: int = 1, *args: str) -> list[harness.ServiceProcess]:
        started = []
        for _ in range(copies):
            index = len(self.processes)
            process = harness.ServiceProcess(
                service, self.env, self.tmp_path / f"{service}-{index}.log", extra_args=list(args)
            ).start()
            self.processes.append(process)
            started.append(process)
        return started

    def start_all_services(self) -> None:
        for service in ("packer", "shipper", "tracker", "omnitron-publisher"):
            self.start(service)

    def logs(self) -> str:
        return "\n".join(p.log_text() for p in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            if process.alive():
                process.process.terminate()
        for process in self.processes:
            if process.process is not None:
                try:
                    process.process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill9()
        self.publisher.close()


LOG_LINES_ON_FAILURE = 40


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report carries the tail of each service's log: CI keeps only the report."""
    report = yield
    if report.when == "call" and report.failed:
        for pipeline in getattr(item, "pipelines", []):
            for process in pipeline.processes:
                tail = process.log_text().splitlines()[-LOG_LINES_ON_FAILURE:]
                report.sections.append((f"log of {process.log_path.name}", "\n".join(tail)))
    return report


@pytest.fixture
def pipeline_factory(request, tmp_path, amqp_url, database_url, carrier, omnitron):
    made = []
    request.node.pipelines = made

    def make(
        poll_interval_s: float = 0.3, extra_env: dict[str, str] | None = None, max_requests_per_s: float = 500
    ) -> Pipeline:
        pipeline = Pipeline(
            tmp_path, amqp_url, database_url, carrier, omnitron, poll_interval_s, extra_env, max_requests_per_s
        )
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        pipeline.stop()


@pytest.fixture
def pipeline(pipeline_factory) -> Pipeline:
    return pipeline_factory()
