"""Real parts for tests: a vhost and a database of their own, service processes, raw publishing.

Nothing here mocks a client: services run as ``oms-shipments run …`` subprocesses
against the local RabbitMQ and PostgreSQL, carriers and Omnitron are HTTP servers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pika
import psycopg

RABBIT_HOST = os.environ.get("OMS_TEST_RABBIT_HOST", "127.0.0.1")
RABBIT_PORT = int(os.environ.get("OMS_TEST_RABBIT_PORT", "5672"))
RABBIT_USER = os.environ.get("OMS_TEST_RABBIT_USER", "guest")
RABBIT_PASSWORD = os.environ.get("OMS_TEST_RABBIT_PASSWORD", "guest")
RABBITMQCTL = os.environ.get("OMS_TEST_RABBITMQCTL", "rabbitmqctl").split()
PG_DSN = os.environ.get("OMS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
BIN = Path(sys.executable).with_name("oms-shipments")
# The stand-ins' secrets: tests look for them where they must never appear (logs, headers).
CARRIER_PASSWORD = "carrier-pa55word-do-not-log"
OMNITRON_TOKEN = "omnitron-t0ken-do-not-log"


class ServiceMissing(RuntimeError):
    pass


def require_port(host: str, port: int, what: str, how: str) -> None:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        raise ServiceMissing(f"{what} is not reachable at {host}:{port} ({exc}). Start it: {how}") from None


def require_rabbitmq() -> None:
    require_port(RABBIT_HOST, RABBIT_PORT, "RabbitMQ", "rabbitmq-server -detached")


def require_postgres() -> None:
    require_port(
        "127.0.0.1",
        5432,
        "PostgreSQL",
        "pg_ctlcluster --skip-systemctl-redirect $(pg_lsclusters -h | awk '{print $1; exit}') main start",
    )


def rabbitmqctl(*args: str) -> str:
    result = subprocess.run([*RABBITMQCTL, *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def create_vhost() -> str:
    require_rabbitmq()
    vhost = f"oms-test-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, RABBIT_USER, ".*", ".*", ".*")
    return vhost


def delete_vhost(vhost: str) -> None:
    try:
        rabbitmqctl("delete_vhost", vhost)
    except Exception:
        pass


def amqp_url(vhost: str) -> str:
    return f"amqp://{RABBIT_USER}:{RABBIT_PASSWORD}@{RABBIT_HOST}:{RABBIT_PORT}/{vhost}"


def pg_admin(sql: str) -> None:
    with psycopg.connect(PG_DSN, autocommit=True) as connection:
        connection.execute(sql)


def create_database(template: str | None = None) -> str:
    require_postgres()
    name = f"oms_test_{uuid.uuid4().hex[:10]}"
    pg_admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def drop_database(name: str) -> None:
    try:
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception:
        pass


def database_url(name: str) -> str:
    return PG_DSN.rsplit("/", 1)[0] + f"/{name}"


def write_carriers_file(path: Path, carriers: dict[str, dict]) -> Path:
    lines = []
    for code, values in carriers.items():
        lines.append(f"[carriers.{code}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class ServiceProcess:
    service: str
    env: dict
    log_path: Path
    process: subprocess.Popen | None = None
    extra_args: list[str] = field(default_factory=list)

    def start(self) -> "ServiceProcess":
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(BIN), "run", self.service, *self.extra_args],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill9(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics_port(self) -> int:
        """The port named by the process's first log line (0 until it is written).

        Processes run with the default port: each takes 9100 or the next free one above it,
        and its first line says which, as it does for an operator.
        """
        return first_line_metrics_port(self.log_text())


def first_line_metrics_port(log_text: str) -> int:
    if "\n" not in log_text:
        return 0  # not written in full yet
    first_line = log_text.split("\n", 1)[0]
    try:
        port = json.loads(first_line).get("metrics_port")
    except (ValueError, AttributeError):
        port = None
    assert isinstance(port, int), f"the first log line must name the metrics port: {first_line!r}"
    return port


class RawPublisher:
    """Publishes like a foreign system: pika, raw bytes, to ``oms.events``, declaring nothing."""

    def __init__(self, url: str):
        self._connection = pika.BlockingConnection(pika.URLParameters(url))
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()

    def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str | None = None,
        event_type: str | None = None,
        content_type: str | None = "application/cloudevents+json",
        exchange: str = "oms.events",
        headers: dict | None = None,
    ) -> None:
        self._channel.basic_publish(
            exchange=exchange,
            routing_key=routing_key,
            body=body,
            properties=pika.BasicProperties(
                delivery_mode=2,
                content_type=content_type,
                message_id=message_id,
                type=event_type,
                headers=headers,
            ),
            mandatory=True,
        )

    def queue_depth(self, queue: str) -> int:
        return self._channel.queue_declare(queue, passive=True).method.message_count

    def get_all(self, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
        """Takes every message off a queue (acks them), for inspecting dead letters."""
        messages = []
        while True:
            method, properties, body = self._channel.basic_get(queue, auto_ack=True)
            if method is None:
                return messages
            messages.append((properties, body))

    def close(self) -> None:
        try:
            self._connection.close()
        except Exception:
            pass


def wait_until(predicate, timeout: float, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")
