"""What a benchmark run stands on: a vhost and a database of its own, service processes, RSS.

Everything is real: ``oms-shipments run …`` subprocesses against the local RabbitMQ and
PostgreSQL.  The vhost and database are created for the run and removed after it,
whatever happens.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pika
import psycopg

# The same servers as the tests (and the same variables, which scripts/test-services.sh sets).
RABBIT_HOST = os.environ.get("OMS_TEST_RABBIT_HOST", "127.0.0.1")
RABBIT_PORT = int(os.environ.get("OMS_TEST_RABBIT_PORT", "5672"))
RABBIT_USER = os.environ.get("OMS_TEST_RABBIT_USER", "guest")
RABBIT_PASSWORD = os.environ.get("OMS_TEST_RABBIT_PASSWORD", "guest")
RABBITMQCTL = os.environ.get("OMS_TEST_RABBITMQCTL", "rabbitmqctl").split()
PG_DSN = os.environ.get("OMS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
BIN = Path(sys.executable).with_name("oms-shipments")
# Settings a service runs with beyond the defaults. None: the figures are what `oms-shipments
# run <service>` does as it starts without flags (OMS_BENCH_CONCURRENCY=4 gives the shipper
# and the Omnitron publisher four handler threads, as docker-compose.yml deploys them).
_THREADS = os.environ.get("OMS_BENCH_CONCURRENCY")
AS_DEPLOYED = (
    {"shipper": {"OMS_CONCURRENCY": _THREADS}, "omnitron-publisher": {"OMS_CONCURRENCY": _THREADS}} if _THREADS else {}
)


def rabbitmqctl(*args: str) -> str:
    result = subprocess.run([*RABBITMQCTL, *args], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def pg_admin(statement: str) -> None:
    with psycopg.connect(PG_DSN, autocommit=True) as connection:
        connection.execute(statement)


class Environment:
    """One run's vhost, database (migrated), declared topology and working directory."""

    def __init__(self):
        tag = uuid.uuid4().hex[:10]
        self.vhost = f"oms-bench-{tag}"
        self.database = f"oms_bench_{tag}"
        self.amqp_url = f"amqp://{RABBIT_USER}:{RABBIT_PASSWORD}@{RABBIT_HOST}:{RABBIT_PORT}/{self.vhost}"
        self.database_url = PG_DSN.rsplit("/", 1)[0] + f"/{self.database}"
        self.workdir = Path(tempfile.mkdtemp(prefix="oms-bench-"))
        self.env: dict[str, str] = {}
        self._created: list[str] = []

    def __enter__(self) -> "Environment":
        try:
            self._create()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _create(self) -> None:
        from services.migrations import upgrade

        rabbitmqctl("add_vhost", self.vhost)
        self._created.append("vhost")
        rabbitmqctl("set_permissions", "-p", self.vhost, RABBIT_USER, ".*", ".*", ".*")
        pg_admin(f'CREATE DATABASE "{self.database}"')
        self._created.append("database")
        upgrade(self.database_url)
        self.env = {
            **os.environ,
            "OMS_AMQP_URL": self.amqp_url,
            "OMS_DATABASE_URL": self.database_url,
            "OMS_LOG_FORMAT": "json",
            "OMS_LOG_LEVEL": "INFO",
            "OMS_METRICS_PORT": "0",
            "OMS_CARRIERS_FILE": str(self.workdir / "carriers.toml"),
        }
        self.cli("topology", "declare")

    def __exit__(self, *exc_info) -> None:
        if "vhost" in self._created:
            try:
                rabbitmqctl("delete_vhost", self.vhost)
            except Exception as exc:
                print(f"could not delete vhost {self.vhost}: {exc}", file=sys.stderr)
        if "database" in self._created:
            try:
                pg_admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            except Exception as exc:
                print(f"could not drop database {self.database}: {exc}", file=sys.stderr)
        if not os.environ.get("OMS_BENCH_KEEP_LOGS"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def cli(self, *args: str) -> None:
        result = subprocess.run([str(BIN), *args], env=self.env, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"oms-shipments {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")

    def write_carriers(self, carriers: dict[str, dict]) -> None:
        lines = []
        for code, values in carriers.items():
            lines.append(f"[carriers.{code}]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        Path(self.env["OMS_CARRIERS_FILE"]).write_text("\n".join(lines) + "\n")

    def service(self, name: str, **env: str) -> "Service":
        settings = {**self.env, **AS_DEPLOYED.get(name, {}), **env}
        return Service(name, settings, self.workdir / f"{name}-{uuid.uuid4().hex[:6]}.log").start()

    # -- the database and the broker, as the benchmark looks at them
    def scalar(self, statement: str, *params):
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            return connection.execute(statement, params or None).fetchone()[0]

    def broker(self) -> pika.BlockingConnection:
        return pika.BlockingConnection(pika.URLParameters(self.amqp_url + "?heartbeat=0"))

    def queue_depth(self, queue: str) -> int:
        connection = self.broker()
        try:
            return connection.channel().queue_declare(queue, passive=True).method.message_count
        finally:
            connection.close()

    def purge(self, *queues: str) -> None:
        connection = self.broker()
        try:
            channel = connection.channel()
            for queue in queues:
                channel.queue_purge(queue)
        finally:
            connection.close()


class Service:
    """An ``oms-shipments run <name>`` process, its log and its memory."""

    def __init__(self, name: str, env: dict, log_path: Path):
        self.name, self.env, self.log_path = name, env, log_path
        self.process: subprocess.Popen | None = None
        self.rss_samples: list[tuple[float, int]] = []  # (monotonic, kB)

    def start(self) -> "Service":
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(BIN), "run", self.name],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def _status(self, field: str) -> int:
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass
        return 0

    def rss_kb(self) -> int:
        return self._status("VmRSS")

    def peak_rss_kb(self) -> int:
        """The high-water mark of the resident set since the process started."""
        return self._status("VmHWM")

    def cpu_s(self) -> float:
        """User and system CPU time the process has used so far."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def sample_rss(self) -> int:
        rss = self.rss_kb()
        self.rss_samples.append((time.monotonic(), rss))
        return rss

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 60) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(10)
        finally:
            self._log.close()

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.05, processes=()):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for process in processes:
            if not process.alive():
                raise RuntimeError(f"{process.name} exited while waiting for {what}:\n{process.log_tail()}")
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}")


def machine_busy_s() -> float:
    """CPU time the whole machine has spent busy (every core, every process), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    with psycopg.connect(PG_DSN) as connection:
        postgres = connection.execute("SHOW server_version").fetchone()[0]
    rabbit = rabbitmqctl("version").strip()
    return {
        "cpu": f"{os.cpu_count()} × {model}",
        "memory": f"{memory_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "rabbitmq": rabbit,
        "postgresql": postgres.split()[0],
        "pika": pika.__version__,
        "load average at start": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }
