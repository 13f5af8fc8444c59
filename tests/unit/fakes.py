"""Small stand-ins for the carriers directory, a carrier client and the Omnitron client.

They are passed through the same parameters the bootstrap fills (``carriers``, ``omnitron``),
and record what they were asked.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable

from services.carriers.shipment_flows import CarrierConfig, CarrierSnapshot, Registration
from services.omnitron_publisher.omnitron import Sent


class FakeCarrierClient:
    """Answers ``register`` with a fixed tracking number and ``query`` from a script of answers.

    A scripted answer is a carrier status string, a :class:`CarrierSnapshot`, an exception
    (raised) or a callable (called with the shipment id; its result is the answer). Answers
    are used in order; the last one is repeated for every later query.
    """

    def __init__(self, tracking_number: str = "SBX123456789", register_error: Exception | None = None):
        self.tracking_number = tracking_number
        self.register_error = register_error
        self.registered: list[tuple[str, str]] = []  # (shipment id, package id)
        self.queried: list[str] = []
        self.history_asked: list[str] = []
        self.deleted: list[str] = []
        self.answers: deque = deque()

    def register(self, shipment_id: str, packed) -> Registration:
        self.registered.append((shipment_id, packed.package_id))
        if self.register_error is not None:
            raise self.register_error
        return Registration(
            tracking_number=self.tracking_number,
            tracking_url=f"https://track.example/{self.tracking_number}",
            label_url=f"https://labels.example/{self.tracking_number}.pdf",
            carrier_status="CREATED",
        )

    def delete(self, shipment_id: str) -> None:
        self.deleted.append(shipment_id)

    def history(self, shipment_id: str) -> list:
        """No tracking events, unless a test's fake tells of some."""
        self.history_asked.append(shipment_id)
        return []

    def will_answer(self, *answers) -> "FakeCarrierClient":
        self.answers.extend(answers)
        return self

    def query(self, shipment_id: str) -> CarrierSnapshot:
        self.queried.append(shipment_id)
        answer = self.answers.popleft() if len(self.answers) > 1 else self.answers[0]
        if callable(answer) and not isinstance(answer, type):
            answer = answer(shipment_id)
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, str):
            return CarrierSnapshot(self.tracking_number, answer, None, None)
        return answer


class AsyncFakeCarrierClient:
    """The tracker's side of a fake carrier, shaped as ``AsyncShipmentFlowsClient``: coroutines
    taking a timeout; each call runs the scripted fake on a thread, as a request would wait."""

    def __init__(self, client: FakeCarrierClient):
        self._client = client

    async def query(self, shipment_id: str, timeout_s: float | None = None) -> CarrierSnapshot:
        return await asyncio.to_thread(self._client.query, shipment_id)

    async def history(self, shipment_id: str, timeout_s: float | None = None) -> list:
        return await asyncio.to_thread(self._client.history, shipment_id)

    async def aclose(self) -> None:
        pass


class FakeCarriers:
    """What the services use of a ``CarrierDirectory``: ``in``, ``configs``, ``integrated(code)``, ``client(code)``."""

    def __init__(self, clients: dict[str, FakeCarrierClient] | None = None, poll_interval_s: float = 60):
        self.clients = clients if clients is not None else {"sandbox": FakeCarrierClient()}
        self.configs = {
            code: CarrierConfig(
                code=code,
                url=f"http://{code}.invalid",
                username="user",
                password="secret",
                poll_interval_s=poll_interval_s,
            )
            for code in self.clients
        }

    def __contains__(self, code: object) -> bool:
        return code in self.clients

    def integrated(self, code: str) -> bool:
        return code in self.clients

    def client(self, code: str) -> FakeCarrierClient:
        return self.clients[code]  # KeyError for an unknown code, like the real directory

    def open_async(self, code: str, max_connections: int = 256) -> "AsyncFakeCarrierClient":
        return AsyncFakeCarrierClient(self.clients[code])

    def close(self) -> None:
        pass


class FakeOmnitron:
    """Records every call it is sent; ``fail_with`` makes every send raise instead;
    ``unanswered_first`` answers after an earlier attempt of the call went unanswered."""

    def __init__(self, fail_with: Exception | None = None):
        self.calls: list = []
        self.fail_with = fail_with
        self.unanswered_first = False

    def send(self, call) -> Sent:
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append(call)
        return Sent(200, unsettled=self.unanswered_first)


class Counter:
    """A callable that counts its calls (an ``after_commit`` hook)."""

    def __init__(self, action: Callable[[], None] | None = None):
        self.calls = 0
        self._action = action

    def __call__(self) -> None:
        self.calls += 1
        if self._action:
            self._action()


def take_embedded(queue: str) -> list:
    """Every message of a queue on the embedded broker, taken off it."""
    from kombu import Connection

    with Connection("memory://") as connection:
        channel = connection.channel()
        taken = []
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            taken.append(message)
        return taken


def work_until(worker, stop, until, timeout_s: float = 10) -> None:
    """Runs a queue worker on a thread until ``until()`` holds; fails if it times out or the worker dies."""
    import threading
    import time

    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    try:
        while not until():
            assert time.monotonic() < deadline, "timed out"
            assert thread.is_alive(), "the worker died"
            time.sleep(0.02)
        assert thread.is_alive(), "the worker died"
    finally:
        stop.set()
        thread.join(10)
