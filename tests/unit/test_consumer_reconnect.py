"""A queue worker whose broker is away keeps trying to reconnect instead of crashing its process."""

from __future__ import annotations

import socket
import threading

from shared.broker import Subscription, Topology
from shared.failure import RetryPolicy
from shared.queue_worker import QueueWorker


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the probe is closed


def test_a_worker_whose_reconnect_is_refused_waits_and_tries_again_until_it_is_stopped():
    # The chaos suite found it: while the broker is still stopping or starting, the
    # reconnect is refused, kombu raises its own OperationalError, and the worker died.
    stop = threading.Event()
    subscription = Subscription("packer", ("package.packed",))
    worker = QueueWorker(
        amqp_url=f"amqp://guest:guest@127.0.0.1:{_closed_port()}//",
        topology=Topology([subscription], [0.5]),
        subscription=subscription,
        handle=lambda delivery: None,
        policy=RetryPolicy(3, (0.5,)),
        stop=stop,
    )
    failure: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # what used to end the whole process
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(2.0)  # long enough for a refused attempt and a retry after the 0.5 s backoff
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert failure == []
