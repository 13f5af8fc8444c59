"""Random (version 4) UUIDs for event and shipment ids, without a system call per id.

``uuid.uuid4()`` reads the operating system's random source for every id, and that call
hands the interpreter lock to another thread: in a busy service each id then waits for
the lock to come back.  These come from the same source, read 4 KiB at a time.
"""

from __future__ import annotations

import os
import threading
import uuid

_POOL_BYTES = 4096
_lock = threading.Lock()
_pool = b""
_used = _POOL_BYTES


def _forget_pool() -> None:
    # A forked child must not hand out the same ids as its parent.
    global _pool, _used
    _pool, _used = b"", _POOL_BYTES


os.register_at_fork(after_in_child=_forget_pool)


def uuid4() -> str:
    global _pool, _used
    with _lock:
        if _used + 16 > _POOL_BYTES:
            _pool, _used = os.urandom(_POOL_BYTES), 0
        raw = _pool[_used : _used + 16]
        _used += 16
    return str(uuid.UUID(bytes=raw, version=4))
