"""A service, declared once: its name, what it consumes, its handlers, what else it runs.

Each ``services/<name>/service.py`` exports one :class:`ServiceSpec` as ``SERVICE``; the
registry (``services/runtime/registry.py``) lists them all.  A spec builds its parts
from a :class:`Runtime`: the adapters the bootstrap made once (or a test's fakes).
Nothing here imports a service, so a service's module never imports the wiring back.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Callable, Mapping, Protocol, Sequence

from sqlalchemy import Engine

from contracts import CloudEvent
from services.carriers.directory import CarrierDirectory
from services.domain.uow import UnitOfWork
from services.runtime.settings import ServiceSettings
from shared import naming
from shared.broker import Subscription

if TYPE_CHECKING:
    from services.runtime.pipeline import Pipeline
    from shared.batch import Handled
    from shared.relay import OutboxRelay

#: A handler: the parsed event and the unit of work that applies it once (its inbox row).
Handler = Callable[[CloudEvent, UnitOfWork], None]
#: Applies the deliveries of one batch (``handle`` is the pipeline's): one ``Handled`` each, in order.
BatchRunner = Callable[[Callable, Sequence], "list[Handled]"]


class Component(Protocol):
    """A part that runs on its own thread until the process stops (a poller, a loop)."""

    def run(self) -> None: ...


@dataclass
class Runtime:
    """What the bootstrap built once, for every service of the process."""

    settings: ServiceSettings
    engine: Engine
    carriers: CarrierDirectory
    stop: threading.Event
    relay: "OutboxRelay"

    def units_of_work(self, consumer: str) -> Callable[..., UnitOfWork]:
        """Makes ``consumer``'s units of work; ``event=`` binds one to the event it applies once."""
        return partial(UnitOfWork, self.engine, consumer, naming.event_source(consumer), after_commit=self.relay.wake)


@dataclass(frozen=True)
class Parts:
    """What a service runs: its handlers by event type (for its work queue) and its other components;
    ``batches``, given the pipeline, makes the service's own way of applying a batch (with
    OMS_BATCH_SIZE > 1; None: one message at a time)."""

    handlers: Mapping[str, Handler] = field(default_factory=dict)
    components: list[Component] = field(default_factory=list)
    batches: "Callable[[Pipeline], BatchRunner | None] | None" = None


@dataclass(frozen=True)
class ServiceSpec:
    """``build`` makes the service's parts from the runtime; ``ordering_key`` (of a parsed
    event) sends the events of one key to one handler thread, in the order they came;
    ``batched``: its messages are applied in batches, one transaction each (shared/batch.py)."""

    name: str
    build: Callable[[Runtime], Parts]
    subscription: Subscription | None = None
    ordering_key: Callable[[CloudEvent], str | None] | None = None
    batched: bool = False
