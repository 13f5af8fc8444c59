"""Named crash points for fault-injection tests (and operators' own chaos drills).

``OMS_FAULT_CRASH_AT=<point>:<n>`` makes the process SIGKILL itself the n-th time it
passes ``<point>`` — e.g. ``after_commit:packer:3`` dies right after the packer's third
database commit, before the broker ack.  Unset (always, in production) it costs one
dict lookup.

Points count units, not round trips: a batch of units of work applied by one commit,
or a batch of events confirmed at once, passes the point once per unit, right after
that commit or confirm.
"""

from __future__ import annotations

import os
import signal
import threading

_lock = threading.Lock()
_counts: dict[str, int] = {}


def _armed() -> tuple[str, int] | None:
    spec = os.environ.get("OMS_FAULT_CRASH_AT")
    if not spec:
        return None
    point, _, nth = spec.rpartition(":")
    return point, int(nth)


_ARMED = _armed()


def crash_point(point: str, units: int = 1) -> None:
    if _ARMED is None or _ARMED[0] != point:
        return
    with _lock:
        before = _counts.get(point, 0)
        _counts[point] = before + units
        if before < _ARMED[1] <= _counts[point]:
            os.kill(os.getpid(), signal.SIGKILL)
