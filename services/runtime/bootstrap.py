"""Wiring, once: settings → engine, carriers, broker topology, the outbox relay, each service's parts.

Tests pass their own carriers directory through :func:`bootstrap` instead of patching anything.
"""

from __future__ import annotations

import signal
import threading
from functools import partial
from typing import Callable

from sqlalchemy import text

from contracts import EVENT_MODELS
from services.carriers.directory import CarrierDirectory, load_carriers
from services.domain.staged import Staging
from services.runtime.pipeline import Pipeline
from services.runtime.registry import SERVICE_NAMES, SERVICES
from services.runtime.settings import ServiceSettings
from services.runtime.spec import Parts, Runtime, ServiceSpec
from services.runtime.startup import check_run
from shared import naming, tracing_setup
from shared.batch import run_batch
from shared.broker import Topology, connect
from shared.db import SessionBounds, make_engine
from shared.failure import RetryPolicy
from shared.health import CannotListen, HealthServer
from shared.logging import get_logger, register_secrets
from shared.metrics import OUTBOX_PUBLISHED, count_disposed
from shared.queue_worker import Batching, QueueWorker
from shared.relay import OutboxRelay

log = get_logger()

__all__ = ["SERVICE_NAMES", "Runtime", "bootstrap", "components", "run", "topology"]

#: The event types a metric may be labelled with; any other type a message claims counts as "other".
KNOWN_EVENT_TYPES = frozenset(EVENT_MODELS)


def topology(settings: ServiceSettings) -> Topology:
    subscriptions = [spec.subscription for spec in SERVICES.values() if spec.subscription is not None]
    return Topology(subscriptions, list(settings.retry_delays_s), settings.queue_type)


def bootstrap(
    settings: ServiceSettings, *, stop: threading.Event | None = None, carriers: CarrierDirectory | None = None
) -> Runtime:
    register_secrets(*settings.secrets())
    if carriers is None:
        carriers = CarrierDirectory(load_carriers(settings.carriers_file), max_retry_after_s=settings.max_retry_after_s)
    register_secrets(*(config.password for config in carriers.configs.values()))
    stop = stop or threading.Event()
    engine = make_engine(settings.database_url.get_secret_value(), bounds=SessionBounds.from_settings(settings))
    relay = OutboxRelay(
        engine=engine,
        amqp_url=settings.amqp_url.get_secret_value(),
        stop=stop,
        batch=settings.relay_batch,
        idle_s=settings.relay_idle_s,
        hold_s=settings.relay_hold_s,
        after_publish=OUTBOX_PUBLISHED.inc,
    )
    return Runtime(settings, engine, carriers, stop, relay)


def components(runtime: Runtime, services: list[str]) -> list:
    """The runnable parts of the named services, plus this process's outbox relay."""
    shared_topology = topology(runtime.settings)
    parts: list = []
    for name in services:
        spec = SERVICES[name]
        built = spec.build(runtime)
        if spec.subscription is not None:
            parts.append(_queue_worker(runtime, spec, built, shared_topology))
        parts.extend(built.components)
    parts.append(runtime.relay)
    return parts


def _queue_worker(runtime: Runtime, spec: ServiceSpec, built: Parts, shared_topology: Topology) -> QueueWorker:
    settings = runtime.settings
    pipeline = Pipeline(spec.name, built.handlers, runtime.units_of_work(spec.name), spec.ordering_key)
    batching = None
    if settings.batch_size > 1:
        if spec.batched:
            batching = Batching(settings.batch_size, partial(run_batch, runtime.engine, staging=Staging))
        elif built.batches is not None:
            runner = built.batches(pipeline)
            batching = Batching(settings.batch_size, runner) if runner is not None else None
    return QueueWorker(
        amqp_url=settings.amqp_url.get_secret_value(),
        topology=shared_topology,
        subscription=spec.subscription,
        decode=pipeline.decode,
        handle=pipeline.handle,
        policy=RetryPolicy(settings.max_attempts, tuple(settings.retry_delays_s)),
        stop=runtime.stop,
        prefetch=settings.prefetch,
        concurrency=settings.concurrency,
        after_disposal=[count_disposed(naming.work_queue(spec.name), KNOWN_EVENT_TYPES)],
        batching=batching,
        ordering_key=pipeline.ordering_key if spec.ordering_key is not None else None,
        max_wait_s=settings.max_retry_after_s,
    )


def health_server(runtime: Runtime, alive: Callable[[], bool]) -> HealthServer:
    amqp_url = runtime.settings.amqp_url.get_secret_value()

    def broker_answers() -> None:
        with connect(amqp_url) as connection:
            connection.ensure_connection(max_retries=1, timeout=2)

    def database_answers() -> None:
        with runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    return HealthServer(
        port=runtime.settings.metrics_port,
        host=runtime.settings.metrics_host,
        stop=runtime.stop,
        alive=alive,
        checks={"broker": broker_answers, "database": database_answers},
    )


class RunningServices:
    """The services' parts on threads; a part that crashes stops the whole process.

    The health server binds its port first, here, so that the start-up line can name it.
    """

    def __init__(self, runtime: Runtime, services: list[str]):
        self.runtime = runtime
        self.failed = threading.Event()
        self._threads: list[threading.Thread] = []
        self.health = (
            health_server(runtime, alive=lambda: all(t.is_alive() for t in self._threads))
            if runtime.settings.metrics_port is not None
            else None
        )
        parts = components(runtime, services) + ([self.health] if self.health else [])
        self._threads = [
            threading.Thread(target=self._guarded, args=(part,), name=type(part).__name__, daemon=True)
            for part in parts
        ]

    def where(self) -> dict:
        """Where this process serves /metrics, /healthz and /readyz, for the start-up line."""
        if self.health is None:
            return {"metrics": "disabled"}
        return {"metrics_port": self.health.port, "metrics_host": self.health.host}

    def _guarded(self, part) -> None:
        try:
            part.run()
        except BaseException:
            log.exception("component crashed; stopping the process", component=type(part).__name__)
            self.failed.set()
            self.runtime.stop.set()

    def start(self) -> "RunningServices":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout_s: float = 90) -> None:
        self.runtime.stop.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        self.runtime.carriers.close()
        self.runtime.engine.dispose()


def run(runtime: Runtime, services: list[str]) -> int:
    """Runs the services until SIGTERM/SIGINT; returns the process exit code.

    The broker, the database's schema and the Omnitron settings are checked first: a
    problem there is reported as one line before anything starts (services/runtime/startup.py).
    The first line logged says which port this process serves its metrics on: on a host
    running several, that is how an operator (or a scrape configuration) finds each one.
    """

    def on_signal(signum, _frame) -> None:
        log.info("stopping: finishing work in hand", signal=signal.Signals(signum).name)
        runtime.stop.set()

    check_run(
        runtime.settings, runtime.engine, services
    )  # a StartupProblem is one line, exit 2 (services/tools/cli.py)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    try:
        running = RunningServices(runtime, services)
    except CannotListen as exc:
        log.error("cannot serve /metrics, /healthz and /readyz", error=exc.strerror)
        return 2
    log.info("starting", services=services, **running.where())
    tracing_setup.start_from_environment("oms-shipments" if len(services) > 1 else f"oms-shipments-{services[0]}")
    running.start()
    while not runtime.stop.wait(0.5):
        pass
    running.stop()
    log.info("stopped", clean=not running.failed.is_set())
    return 1 if running.failed.is_set() else 0
