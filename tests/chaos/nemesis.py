"""The nemesis: faults picked at random (seeded), one after the other, each logged.

It kills service processes with SIGKILL and starts replacements, stops and starts the
broker app, restarts PostgreSQL, and makes the carrier and Omnitron stand-ins fail or
answer slowly. Whatever it stops it starts again in a ``finally``; :meth:`Nemesis.heal`
undoes the rest. These faults touch the machine's shared RabbitMQ and PostgreSQL.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from dataclasses import dataclass

import harness
from harness import wait_until

#: Every fault kind, by the method that causes it.
KINDS = (
    "kill9",
    "broker_restart",
    "postgres_restart",
    "carrier_500",
    "carrier_429",
    "carrier_slow",
    "omnitron_500",
    "omnitron_slow",
)
KILL_WEIGHT = 3
#: Kinds cheap enough to fill a short slice.
LIGHT_KINDS = ("carrier_500", "carrier_429", "carrier_slow", "omnitron_slow")


@dataclass(frozen=True)
class Fault:
    at_s: float  # since the nemesis started
    kind: str
    detail: str
    took_s: float

    def __str__(self) -> str:
        return f"t={self.at_s:6.1f}s  {self.kind:<17} {self.detail} ({self.took_s:.1f}s)"


def _pg_cluster() -> str:
    out = subprocess.run("pg_lsclusters -h | awk '{print $1; exit}'", shell=True, capture_output=True, text=True)
    return out.stdout.strip()


def postgres_ready() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0


def start_postgres() -> None:
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", _pg_cluster(), "main", "start"], timeout=120)
    wait_until(postgres_ready, 120, interval=0.5, message="PostgreSQL back")


def start_broker() -> None:
    harness.rabbitmqctl("start_app")
    harness.rabbitmqctl("await_startup")


class Nemesis(threading.Thread):
    """Runs ``plan`` (fault kinds, or None: pick at random) spread over ``duration_s``."""

    def __init__(
        self,
        pipeline,
        running: dict[str, list],
        rng: random.Random,
        duration_s: float,
        kinds: tuple[str, ...] = KINDS,
        plan: list[str] | None = None,
    ):
        super().__init__(name="nemesis", daemon=True)
        self.pipeline = pipeline
        self.running = running  # service -> its live processes, kept up to date here
        self.rng = rng
        self.duration_s = duration_s
        self.kinds = kinds
        self.plan = plan
        self.log: list[Fault] = []
        self.errors: list[str] = []  # the nemesis's own failures: the run is not valid
        self.died: list[str] = []  # processes found dead before the nemesis killed them
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._victims: list[str] = []
        self._t0 = time.monotonic()

    # ---- the loop ----------------------------------------------------------------------

    def run(self) -> None:
        self._t0 = time.monotonic()
        deadline = self._t0 + self.duration_s
        try:
            if self.plan is not None:
                slot = self.duration_s / len(self.plan)
                for n, kind in enumerate(self.plan):
                    # Each fault at a random moment of its own slot, leaving room for it to finish.
                    self._sleep_until(self._t0 + n * slot + self.rng.uniform(0.1, 0.5) * slot)
                    self._cause(kind)
                self._sleep_until(deadline)
                return
            # Every kind once, in a random order, then at random until the time is up;
            # kills weigh more: there are eight processes to kill, and they are the point.
            queue = list(self.kinds)
            self.rng.shuffle(queue)
            weighted = [kind for kind in self.kinds for _ in range(KILL_WEIGHT if kind == "kill9" else 1)]
            while time.monotonic() < deadline and not self.stopping.is_set():
                self._cause(queue.pop(0) if queue else self.rng.choice(weighted))
                self._sleep_until(min(deadline, time.monotonic() + self.rng.uniform(2, 8)))
        except Exception as exc:  # reported with the run, never swallowed
            self.errors.append(f"nemesis failed: {type(exc).__name__}: {exc}")

    def _sleep_until(self, moment: float) -> None:
        self.stopping.wait(max(0.0, moment - time.monotonic()))

    def _cause(self, kind: str) -> None:
        if self.stopping.is_set():
            return
        started = time.monotonic()
        detail = getattr(self, kind)()
        fault = Fault(started - self._t0, kind, detail, time.monotonic() - started)
        self.log.append(fault)
        print(f"nemesis: {fault}", flush=True)

    # ---- the faults ----------------------------------------------------------------------

    def kill9(self) -> str:
        if not self._victims:  # every service in turn, in a random order each round
            self._victims = sorted(self.running)
            self.rng.shuffle(self._victims)
        service = self._victims.pop()
        with self._lock:
            victims = self.running[service]
            victim = victims[self.rng.randrange(len(victims))]
            pid = victim.process.pid
            if not victim.alive():
                self.died.append(f"{victim.log_path.name} (pid {pid}) exited by itself: {victim.process.returncode}")
            victim.kill9()
            pause = self.rng.uniform(0, 1)
            time.sleep(pause)
            replacement = self.pipeline.start(service)[0]
            victims[victims.index(victim)] = replacement
        return f"{service} pid {pid} killed, replaced after {pause:.2f}s by pid {replacement.process.pid}"

    def broker_restart(self) -> str:
        down = self.rng.uniform(2, 6)
        try:
            harness.rabbitmqctl("stop_app")
            time.sleep(down)
        finally:
            start_broker()
        return f"rabbitmqctl stop_app, {down:.1f}s down, start_app"

    def postgres_restart(self) -> str:
        down = self.rng.uniform(1, 4)
        try:
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", _pg_cluster(), "main", "stop", "-m", "fast"],
                check=True,
                timeout=120,
            )
            time.sleep(down)
        finally:
            start_postgres()
        return f"pg_ctlcluster stop -m fast, {down:.1f}s down, start"

    def carrier_500(self) -> str:
        n = self.rng.randint(3, 15)
        self.pipeline.carrier.fail_next(n, 500)
        return f"carrier answers the next {n} requests with 500"

    def carrier_429(self) -> str:
        n = self.rng.randint(3, 15)
        self.pipeline.carrier.fail_next(n, 429, retry_after=1)
        return f"carrier answers the next {n} requests with 429, Retry-After: 1"

    def omnitron_500(self) -> str:
        n = self.rng.randint(2, 10)
        self.pipeline.omnitron.fail_next(n, 500)
        return f"Omnitron answers the next {n} requests with 500"

    def carrier_slow(self) -> str:
        return self._slow(self.pipeline.carrier, "carrier")

    def omnitron_slow(self) -> str:
        return self._slow(self.pipeline.omnitron, "Omnitron")

    def _slow(self, server, name: str) -> str:
        # Well under the clients' 10 s timeouts: slow answers, not lost ones.
        latency, burst = self.rng.uniform(0.3, 2.0), self.rng.uniform(3, 8)
        server.latency_s = latency
        try:
            self.stopping.wait(burst)
        finally:
            server.latency_s = 0.0
        return f"{name} answers after {latency:.2f}s for {burst:.1f}s"

    # ---- afterwards ------------------------------------------------------------------------

    def heal(self) -> None:
        """Everything back: broker and database up, no latency, no injected failure left."""
        self.stopping.set()
        if self.ident is not None:  # started
            self.join(timeout=180)
        if self.is_alive():
            self.errors.append("the nemesis did not finish its last fault within 180 s")
        if not postgres_ready():
            start_postgres()
        start_broker()  # a no-op when it runs
        for server in (self.pipeline.carrier, self.pipeline.omnitron):
            server.latency_s = 0.0
            with server._lock:  # the stand-ins have no public way to forget queued faults
                server._faults.clear()
