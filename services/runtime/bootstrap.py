"""Wiring, once: settings → engine, carriers, Omnitron, broker topology, the services' parts.

Tests pass their own carriers directory or Omnitron client through :func:`bootstrap`
instead of patching anything.
"""
from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable

from sqlalchemy import Engine, text

from contracts import EVENT_MODELS
from services.carriers.directory import CarrierDirectory, load_carriers
from services.domain.staged import Staging
from services.domain.uow import UnitOfWork
from services.runtime.startup import check_run
from shared import naming
from shared.broker import Topology, connect
from shared.health import CannotListen, HealthServer
from shared.metrics import OUTBOX_PUBLISHED, count_settled
from shared.batch import run_batch
from shared.consumer import Batching, QueueWorker
from shared.db import SessionBounds, make_engine
from shared.failure import RetryPolicy
from shared.logging import get_logger, register_secrets
from shared.relay import OutboxRelay
from shared.settings import Settings

log = get_logger()

SERVICE_NAMES = ("packer", "shipper", "tracker", "omnitron-publisher")
#: The event types a metric may be labelled with; any other type a message claims counts as "other".
KNOWN_EVENT_TYPES = frozenset(EVENT_MODELS)

#: Services whose messages are applied in batches, one transaction per batch
#: (OMS_BATCH_SIZE, shared/batch.py).  Only handlers that touch nothing but the database:
#: the shipper calls the carrier between its two transactions and the Omnitron publisher
#: calls Omnitron inside its own, so batched, a crash would repeat every call of the
#: batch instead of one, and the batch's row locks would be held across those calls.
BATCHED_SERVICES = frozenset({"packer"})


def service_modules() -> dict[str, ModuleType]:
    from services.omnitron_publisher import service as omnitron_publisher
    from services.packer import service as packer
    from services.shipper import service as shipper
    from services.tracker import service as tracker

    return {"packer": packer, "shipper": shipper, "tracker": tracker, "omnitron-publisher": omnitron_publisher}


def topology(settings: Settings) -> Topology:
    subscriptions = [m.SUBSCRIPTION for m in service_modules().values() if hasattr(m, "SUBSCRIPTION")]
    return Topology(subscriptions, list(settings.retry_delays_s), settings.queue_type)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    carriers: CarrierDirectory
    stop: threading.Event
    relay: OutboxRelay
    omnitron_factory: Callable[[], object]
    _omnitron: object | None = field(default=None, init=False)

    def uow(self, consumer: str) -> UnitOfWork:
        return UnitOfWork(self.engine, consumer, naming.event_source(consumer), after_commit=self.relay.wake)

    def omnitron(self):
        if self._omnitron is None:
            self._omnitron = self.omnitron_factory()
        return self._omnitron


def _default_omnitron(settings: Settings):
    from services.omnitron_publisher.omnitron import OmnitronClient

    if not settings.omnitron_url or not settings.omnitron_token:
        raise SystemExit("the omnitron-publisher needs OMS_OMNITRON_URL and OMS_OMNITRON_TOKEN")
    # A few quick tries in hand; longer outages wait in the delay queues, not in a
    # handler that holds the shipment's relay lock.
    return OmnitronClient(settings.omnitron_url, settings.omnitron_token.get_secret_value(),
                          timeout_s=settings.omnitron_timeout_s, retry_attempts=3, max_wait_s=5,
                          max_retry_after_s=settings.max_retry_after_s)


def bootstrap(
    settings: Settings,
    *,
    stop: threading.Event | None = None,
    carriers: CarrierDirectory | None = None,
    omnitron_factory: Callable[[], object] | None = None,
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
    return Runtime(settings, engine, carriers, stop, relay, omnitron_factory or (lambda: _default_omnitron(settings)))


def components(runtime: Runtime, services: list[str]) -> list:
    """The runnable parts of the named services, plus this process's outbox relay."""
    from services.runtime.messagebus import dispatcher

    settings = runtime.settings
    policy = RetryPolicy(settings.max_attempts, tuple(settings.retry_delays_s))
    shared_topology = topology(settings)
    modules = service_modules()
    parts: list = []
    for name in services:
        module = modules[name]
        batching = None
        if name in BATCHED_SERVICES and settings.batch_size > 1:
            engine = runtime.engine
            batching = Batching(settings.batch_size,
                                lambda handle, deliveries: run_batch(engine, handle, deliveries, staging=Staging))
        if hasattr(module, "SUBSCRIPTION"):
            parts.append(
                QueueWorker(
                    amqp_url=settings.amqp_url.get_secret_value(),
                    topology=shared_topology,
                    subscription=module.SUBSCRIPTION,
                    handle=dispatcher(module.handlers(runtime)),
                    policy=policy,
                    stop=runtime.stop,
                    prefetch=settings.prefetch,
                    concurrency=settings.concurrency,
                    after_settle=[count_settled(naming.work_queue(name), KNOWN_EVENT_TYPES)],
                    batching=batching,
                    ordering_key=getattr(module, "ORDERING_KEY", None),
                    max_wait_s=settings.max_retry_after_s,
                )
            )
        if hasattr(module, "components"):
            parts.extend(module.components(runtime))
    parts.append(runtime.relay)
    return parts


def health_server(runtime: Runtime, alive: Callable[[], bool]) -> HealthServer:
    amqp_url = runtime.settings.amqp_url.get_secret_value()

    def broker_answers() -> None:
        with connect(amqp_url) as connection:
            connection.ensure_connection(max_retries=1, timeout=2)

    def database_answers() -> None:
        with runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    return HealthServer(port=runtime.settings.metrics_port, host=runtime.settings.metrics_host,
                        stop=runtime.stop, alive=alive,
                        checks={"broker": broker_answers, "database": database_answers})


class RunningServices:
    """The services' parts on threads; a part that crashes stops the whole process.

    The health server binds its port first, here, so that the start-up line can name it.
    """

    def __init__(self, runtime: Runtime, services: list[str]):
        self.runtime = runtime
        self.failed = threading.Event()
        self._threads: list[threading.Thread] = []
        self.health = (health_server(runtime, alive=lambda: all(t.is_alive() for t in self._threads))
                       if runtime.settings.metrics_port is not None else None)
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

    check_run(runtime.settings, runtime.engine, services)  # a StartupProblem is one line, exit 2 (services/tools/cli.py)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    try:
        running = RunningServices(runtime, services)
    except CannotListen as exc:
        log.error("cannot serve /metrics, /healthz and /readyz", error=exc.strerror)
        return 2
    log.info("starting", services=services, **running.where())
    running.start()
    while not runtime.stop.wait(0.5):
        pass
    running.stop()
    log.info("stopped", clean=not running.failed.is_set())
    return 1 if running.failed.is_set() else 0
