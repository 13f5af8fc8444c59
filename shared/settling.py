"""Settling what the handler threads finished: one decision for each message, and its disposal.

A queue worker's connection thread takes each finished run (a message, or a batch) with
how each of its messages ended (``Handled``), asks the failure policy (``decide``: ack, a
retry tier, or the dead-letter queue), has the disposer carry that out, acks the applied
ones together (one ``multiple`` ack for a contiguous run) and then calls the after-disposal
hooks (metrics). Whatever fails on the way, for one message, dead-letters that message
with the error as its reason (``dead_letter_anyway``): the connection thread never dies of
a message, and a hook that fails stops nothing.
"""

from __future__ import annotations

import dataclasses
import queue
from typing import Any, Callable

from shared.batch import Handled
from shared.delivery import Delivery, Work
from shared.disposal import Disposer
from shared.failure import Decision, RetryPolicy, Verdict, consumer_failure, decide, safe_text

#: Called after a message was disposed of, with the decision and the time its handling took.
Hook = Callable[[Delivery, Decision, float], None]
#: What the broker connection fails with when it is lost: never caught here.
Lost = tuple[type[BaseException], ...]
#: Finished runs, from the handler threads to the connection thread.
Finished = queue.Queue[tuple[Work, list[Handled]]]


class Settler:
    """One broker session's settling, on its connection thread: ``disposer`` owns its channel;
    ``batched``: the runs are batches (logged as such)."""

    def __init__(
        self, *, disposer: Disposer, policy: RetryPolicy, hooks: list[Hook], lost: Lost, log: Any, batched: bool
    ):
        self._disposer = disposer
        self._policy = policy
        self._hooks = hooks
        self._lost = lost
        self._log = log
        self._batched = batched

    def settle(self, done: Finished, wait_s: float = 0.0) -> None:
        """Settles every finished run in ``done``; waits up to ``wait_s`` for the first."""
        first = True
        while True:
            try:
                work, outcomes = done.get(timeout=wait_s) if (wait_s and first) else done.get_nowait()
            except queue.Empty:
                return
            first = False
            self._settle_run(work, outcomes)

    def _settle_run(self, work: Work, outcomes: list[Handled]) -> None:
        applied, failed, disposed = [], [], []
        for (message, delivery), outcome in zip(work, outcomes):
            try:
                decision = decide(outcome.error, delivery.failed_attempts, self._policy)
                if decision.verdict is not Verdict.ACK:
                    self._disposer.dispose(message, delivery, decision)
            except self._lost:
                raise
            except Exception as error:  # e.g. an error whose text cannot be had: dead-letter it
                decision = self.dead_letter_anyway(message, delivery, error)
            if decision.verdict is Verdict.ACK:
                applied.append(message)
            else:
                failed.append(delivery.message_id)
            disposed.append((delivery, decision, outcome.elapsed_s))
        self._disposer.ack_all(applied)
        if self._batched:
            self._log.debug(
                "batch settled",
                size=len(work),
                applied=len(applied),
                failed=failed,
                message_ids=[delivery.message_id for _, delivery in work],
            )
        for delivery, decision, elapsed in disposed:
            for hook in self._hooks:
                try:
                    hook(delivery, decision, elapsed)
                except Exception as error:  # the message is disposed of; a metric must not stop the worker
                    self._log.error(
                        "an after-disposal hook failed", message_id=delivery.message_id, error=safe_text(error)
                    )

    def dead_letter_anyway(self, message: Any, delivery: Delivery, error: BaseException) -> Decision:
        """Dead-letters a message the worker's own path failed on; should even that fail on
        the message's headers, it goes without them (its bytes can always be published)."""
        decision = consumer_failure(error)
        self._log.error(
            "the consumer could not take a message; dead-lettering it",
            message_id=delivery.message_id,
            error_class=decision.error_class,
            error=decision.reason,
        )
        try:
            self._disposer.dispose(message, delivery, decision)
        except self._lost:
            raise
        except Exception as again:
            self._log.error(
                "dead-lettering it with its headers failed; without them",
                message_id=delivery.message_id,
                error=safe_text(again),
            )
            self._disposer.dispose(message, dataclasses.replace(delivery, headers={}), decision)
        return decision
