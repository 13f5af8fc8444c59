"""The whole pipeline: four ``run`` processes, packages in as upstream sends them, Omnitron out.

Throughput is a burst: every package's PackagePacked and PackageShipped published at
once, timed from the first publish to the last package's final Omnitron call.  Latency
and memory come from a paced run (a soak): packages at a steady rate, each carrier
status timed from the carrier first answering it to Omnitron receiving its call.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from benchmarks.infra import Environment, Service, machine_busy_s, wait_for
from benchmarks.standins import OMNITRON_CALL, OMNITRON_TOKEN, StandIn
from benchmarks.workload import Upstream, item_of, package_packed, package_shipped
from shared import naming

SERVICES = ("packer", "shipper", "tracker", "omnitron-publisher")


class Pipeline:
    def __init__(self, env: Environment, carrier: StandIn, omnitron: StandIn):
        self.env, self.carrier, self.omnitron = env, carrier, omnitron
        self.processes: dict[str, Service] = {}

    def start(self) -> "Pipeline":
        for name in SERVICES:
            extra = {"OMS_OMNITRON_URL": self.omnitron.url, "OMS_OMNITRON_TOKEN": OMNITRON_TOKEN}
            self.processes[name] = self.env.service(name, OMS_TRACKER_IDLE_S="0.1", **extra)
        queues = [naming.work_queue(name) for name in SERVICES if name != "tracker"]

        def consuming() -> bool:
            connection = self.env.broker()
            try:
                channel = connection.channel()
                return all(channel.queue_declare(q, passive=True).method.consumer_count for q in queues)
            finally:
                connection.close()

        wait_for(consuming, 60, "every service to consume", 0.2, processes=self.processes.values())
        return self

    def check(self) -> None:
        for process in self.processes.values():
            if not process.alive():
                raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")

    def sample_rss(self) -> dict[str, int]:
        return {name: process.sample_rss() for name, process in self.processes.items()}

    def peak_rss(self) -> dict[str, int]:
        return {name: process.peak_rss_kb() for name, process in self.processes.items()}

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()


@dataclass
class Burst:
    packages: int
    seconds: float
    cpu_s: dict[str, float] = field(default_factory=dict)  # each service process's CPU during the burst
    machine_cpu_s: float = 0.0  # the whole machine's, every process included

    def cpu_ms_per_package(self, name: str | None = None) -> float:
        spent = self.machine_cpu_s if name is None else self.cpu_s[name]
        return spent * 1000 / self.packages

    @property
    def rate(self) -> float:
        return self.packages / self.seconds


@dataclass
class Soak:
    offered_rate: float
    packages: int
    minutes: float
    latencies_ms: list[float]
    rss_kb: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # (seconds in, kB)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")

    def rss_at(self, name: str, seconds: float) -> int:
        """The last sample at or before ``seconds`` into the run."""
        return max(((t, kb) for t, kb in self.rss_kb[name] if t <= seconds), default=(0, 0))[1]

    def rss_last(self, name: str) -> int:
        return self.rss_kb[name][-1][1]


def _publish(upstream: Upstream, n: int, prefix: str) -> None:
    upstream.publish(package_packed(n, prefix))
    upstream.publish(package_shipped(n, prefix))


def _wait_final(pipeline: Pipeline, prefix: str, count: int, timeout_s: float) -> float:
    """Waits for the final Omnitron call of the ``count`` packages of ``prefix``; when the last one came."""
    path = f"finals?first={item_of(prefix, 0)}&count={count}"

    def all_final():
        pipeline.check()
        finals = pipeline.omnitron.get(path)
        return finals["last"] if finals["done"] == count else None

    return wait_for(all_final, timeout_s, "every package's final Omnitron call", 0.2)


def burst(pipeline: Pipeline, count: int, prefix: str = "E2E") -> Burst:
    cpu_before = {name: process.cpu_s() for name, process in pipeline.processes.items()}
    machine_before = machine_busy_s()
    upstream = Upstream(pipeline.env.amqp_url)
    started = time.monotonic()
    try:
        for n in range(count):
            _publish(upstream, n, prefix)
    finally:
        upstream.close()
    last = _wait_final(pipeline, prefix, count, timeout_s=60 + count)
    cpu = {name: process.cpu_s() - cpu_before[name] for name, process in pipeline.processes.items()}
    return Burst(count, last - started, cpu, machine_busy_s() - machine_before)


def latencies(pipeline: Pipeline, prefix: str, since: float) -> list[float]:
    """Carrier status first answered → its Omnitron call, for the shipments of ``prefix``."""
    calls = {(item, kind, code): at for item, kind, code, at in pipeline.omnitron.get("calls")}
    found = []
    for _shipment, order, status, answered in pipeline.carrier.get("answers"):
        if answered < since or status not in OMNITRON_CALL or not order.startswith(f"ORD-{prefix}-"):
            continue
        called = calls.get((item_of(prefix, int(order.rsplit("-", 1)[1])), *OMNITRON_CALL[status]))
        if called is not None:
            found.append((called - answered) * 1000)
    return found


def soak(pipeline: Pipeline, rate: float, minutes: float, prefix: str = "SOAK", sample_every_s: float = 5.0) -> Soak:
    """Packages at ``rate`` per second for ``minutes``; latencies and RSS samples along the way."""
    count = max(1, int(rate * minutes * 60))
    result = Soak(rate, count, minutes, [], {name: [] for name in pipeline.processes})
    failure: list[BaseException] = []

    def feed() -> None:
        upstream = Upstream(pipeline.env.amqp_url)
        try:
            for k in range(count):
                delay = started + k / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                _publish(upstream, k, prefix)
        except BaseException as exc:
            failure.append(exc)
        finally:
            upstream.close()

    started = time.monotonic()
    feeder = threading.Thread(target=feed, name="bench-feeder", daemon=True)
    feeder.start()
    next_sample = started
    while feeder.is_alive():
        if time.monotonic() >= next_sample:
            for name, kb in pipeline.sample_rss().items():
                result.rss_kb[name].append((time.monotonic() - started, kb))
            next_sample += sample_every_s
        pipeline.check()
        time.sleep(0.2)
    if failure:
        raise failure[0]
    _wait_final(pipeline, prefix, count, timeout_s=120)
    for name, kb in pipeline.sample_rss().items():
        result.rss_kb[name].append((time.monotonic() - started, kb))
    result.latencies_ms = latencies(pipeline, prefix, since=started)
    return result
