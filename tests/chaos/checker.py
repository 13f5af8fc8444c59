"""What became of each package after a chaos run, judged from the outside, as Jepsen does.

Pure: :func:`check` takes what a run observed, per package — the carrier script it was
given (its *fate*), the calls Omnitron received per order item, the shipment's status
history in the database and, optionally, the Omnitron publisher's relay log — and
returns a :class:`Report`; no broker, database or HTTP here.

Every package gets one class, the worst that applies:

- ``lost``: its final status never reached the database or Omnitron, or an event was
  never applied (no ``pending``/``registered``/``shipped`` row, an order item Omnitron
  never heard of, a stored change the publisher never handled).
- ``regressed``: the database history or Omnitron moved back (a lower or equal rank,
  ``contracts.statuses.RANK``, after a higher one; anything after a final status).
- ``duplicated``: a change applied twice: two history rows with one status, sequences
  with gaps or repeats, a change that does not start where the previous one ended, one
  change relayed twice.
- ``unexpected``: a status the fate cannot lead to, in the database or in Omnitron.
- ``recovered``: none of the above, but faults left marks: a call repeated back to back
  (at least once at the HTTP boundary), an intermediate status skipped in the database
  (the carrier moved on before its answer was recorded) or in Omnitron (a newer change
  was relayed first, which the contract allows).
- ``ok``: exactly the history and the calls the fate dictates, each once.

A *repeated relay* is a call identical to the previous call for the same order item.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from contracts.statuses import FINAL_STATUSES, OMNITRON_ITEM_STATUS, RANK, ShipmentStatus, can_transition

S = ShipmentStatus
Call = tuple[str, str]  # ("bulk", "500") or ("extra", "pending"), as calls_for_item returns them

#: CONTRACT.md §4: carrier statuses and what they become.
CARRIER_STATUSES: dict[str, ShipmentStatus] = {
    "CREATED": S.REGISTERED,
    "SHIPPING": S.SHIPPED,
    "READY_FOR_PICKUP": S.READY_FOR_PICKUP,
    "ATTEMPTED_DELIVERY": S.ATTEMPTED_DELIVERY,
    "DELIVERED": S.DELIVERED,
    "DELIVERY_FAILED": S.DELIVERY_FAILED,
    "DELETED": S.CANCELLED,
}
#: Every shipment's first three changes: PackagePacked, the registration, PackageShipped.
HANDED_OVER = (S.PENDING, S.REGISTERED, S.SHIPPED)

# Operator commands in a fate (CONTRACT.md §2), beside the carrier's answers:
#: the package is cancelled (PackageCancelled) and never handed over;
CANCEL = "@cancelled"
#: its carrier has no integration: never registered, shipped by its PackageShipped;
MANUAL = "@manual"
#: "@<status>": an employee sets the status (ShipmentStatusSet) once the shipment is shipped.
SET_PREFIX = "@"


def carrier_script(fate: Sequence[str]) -> list[str]:
    """What the carrier answers, query after query: the fate without its commands."""
    return [step for step in fate if not step.startswith(SET_PREFIX)]


def required_statuses(fate: Sequence[str]) -> tuple[ShipmentStatus, ...]:
    """The changes every run must record for this fate, whatever raced."""
    if CANCEL in fate:
        return (S.PENDING,)  # registered only if the cancellation came after the registration
    if MANUAL in fate:
        return (S.PENDING, S.SHIPPED)
    return HANDED_OVER


#: Worst first: a package gets the first class that applies.
PROBLEMS = ("lost", "regressed", "duplicated", "unexpected")
CLASSES = (*PROBLEMS, "recovered", "ok")

_STATUS_BY_CODE = {code: status for status, code in OMNITRON_ITEM_STATUS.items()}


def expected_history(fate: Sequence[str]) -> tuple[ShipmentStatus, ...]:
    """The status history a carrier script (and its commands) leads to when every answer is recorded."""
    if CANCEL in fate:
        return (S.PENDING, S.REGISTERED, S.CANCELLED)
    history = [S.PENDING, S.SHIPPED] if MANUAL in fate else list(HANDED_OVER)
    for step in fate:
        if step == MANUAL:
            continue
        status = ShipmentStatus(step[1:]) if step.startswith(SET_PREFIX) else CARRIER_STATUSES[step]
        if can_transition(history[-1], status):
            history.append(status)
    return tuple(history)


def omnitron_call(status: ShipmentStatus) -> Call:
    """CONTRACT.md §5: a status with an Omnitron code is a bulk call, any other an extra field."""
    code = OMNITRON_ITEM_STATUS.get(status)
    return ("bulk", code) if code is not None else ("extra", status.value)


def status_of_call(call: Call) -> ShipmentStatus | None:
    kind, value = call
    if kind == "bulk":
        return _STATUS_BY_CODE.get(value)
    try:
        return ShipmentStatus(value) if kind == "extra" else None
    except ValueError:
        return None


def _status(value: str | None) -> ShipmentStatus | None:
    try:
        return ShipmentStatus(value) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class HistoryRow:
    """One ``shipment_status_changes`` row."""

    sequence: int
    previous_status: str | None
    status: str


@dataclass(frozen=True)
class Relay:
    """One ``omnitron_relays`` row: ``sent`` or ``skipped_stale``."""

    sequence: int
    outcome: str


@dataclass(frozen=True)
class Observation:
    """Everything a run saw of one package. ``history`` and ``relays`` take tuples too."""

    package_id: str
    fate: tuple[str, ...]
    omnitron: Mapping[int, Sequence[Call]]  # every order item of the package, even one without calls
    history: Sequence[HistoryRow | tuple] = ()
    relays: Sequence[Relay | tuple] | None = None  # None: the relay log is not checked


@dataclass
class Verdict:
    package_id: str
    fate: tuple[str, ...]
    problems: dict[str, list[str]] = field(default_factory=dict)  # class -> why
    marks: list[str] = field(default_factory=list)  # what faults left, for ``recovered``
    relays: int = 0  # calls Omnitron received for the package's items
    repeated: int = 0  # of which repeated back to back

    @property
    def klass(self) -> str:
        for name in PROBLEMS:
            if self.problems.get(name):
                return name
        return "recovered" if self.marks else "ok"

    @property
    def why(self) -> list[str]:
        return [f"{name}: {reason}" for name in PROBLEMS for reason in self.problems.get(name, [])] + self.marks

    def _problem(self, name: str, reason: str) -> None:
        self.problems.setdefault(name, []).append(reason)


@dataclass
class Report:
    verdicts: list[Verdict]

    @property
    def counts(self) -> dict[str, int]:
        seen = Counter(v.klass for v in self.verdicts)
        return {name: seen.get(name, 0) for name in CLASSES}

    @property
    def relays(self) -> int:
        return sum(v.relays for v in self.verdicts)

    @property
    def repeated_relays(self) -> int:
        return sum(v.repeated for v in self.verdicts)

    @property
    def repeated_share(self) -> float:
        return self.repeated_relays / self.relays if self.relays else 0.0

    @property
    def valid(self) -> bool:
        """No package lost, regressed, duplicated or unexpected."""
        return not any(self.counts[name] for name in PROBLEMS)

    def of(self, klass: str) -> list[Verdict]:
        return [v for v in self.verdicts if v.klass == klass]

    def render(self, title: str = "chaos check") -> str:
        counts = self.counts
        total = len(self.verdicts)
        lines = [f"== {title}: {total} packages ==", f"  {'class':<12}{'packages':>9}{'share':>9}"]
        for name in CLASSES:
            share = f"{100 * counts[name] / total:.1f}%" if total else "-"
            lines.append(f"  {name:<12}{counts[name]:>9}{share:>9}")
        lines.append(
            f"  Omnitron relays: {self.relays} item calls, {self.repeated_relays} repeated "
            f"({100 * self.repeated_share:.2f}%)"
        )
        lines.append(f"  valid? {'yes' if self.valid else 'NO'}")
        others = [v for v in self.verdicts if v.klass != "ok"]
        if others:
            lines.append("  -- packages not ok --")
            others.sort(key=lambda v: (CLASSES.index(v.klass), v.package_id))
            for verdict in others:
                lines.append(f"  {verdict.package_id:<14}{verdict.klass:<11}{' | '.join(verdict.why)}")
        return "\n".join(lines)


def check(observations: Iterable[Observation]) -> Report:
    return Report([judge(observation) for observation in observations])


def judge(observation: Observation) -> Verdict:
    verdict = Verdict(observation.package_id, tuple(observation.fate))
    expected = expected_history(observation.fate)
    rows = sorted(
        (r if isinstance(r, HistoryRow) else HistoryRow(*r) for r in observation.history), key=lambda r: r.sequence
    )
    recorded = _judge_history(verdict, expected, rows)
    _judge_omnitron(verdict, expected, recorded, observation.omnitron)
    if observation.relays is not None and rows:
        relays = [r if isinstance(r, Relay) else Relay(*r) for r in observation.relays]
        _judge_relays(verdict, rows, relays, observation.omnitron)
    return verdict


def _judge_history(verdict: Verdict, expected: tuple[ShipmentStatus, ...], rows: list[HistoryRow]) -> list:
    """The database's side; the statuses it recorded, in order."""
    final = expected[-1]
    if not rows:
        verdict._problem("lost", "never reached the database (its PackagePacked was never applied)")
        return []
    sequences = [r.sequence for r in rows]
    if sequences != list(range(1, len(rows) + 1)):
        verdict._problem("duplicated", f"sequences {sequences}, not 1..{len(rows)} without gaps or repeats")
    recorded: list[ShipmentStatus] = []
    previous: str | None = None
    for row in rows:
        status = _status(row.status)
        if row.previous_status != previous:
            verdict._problem(
                "duplicated",
                f"change {row.sequence} ({row.status}) starts from "
                f"{row.previous_status}, the one before ended at {previous}",
            )
        previous = row.status
        if status is None:
            verdict._problem("unexpected", f"change {row.sequence}: unknown status {row.status!r}")
            continue
        moved_back = (
            bool(recorded)
            and status is not recorded[-1]
            and (recorded[-1] in FINAL_STATUSES or RANK[status] <= RANK[recorded[-1]])
        )
        if moved_back:
            verdict._problem("regressed", f"database moved back: {status.value} after {recorded[-1].value}")
        if status in recorded:
            verdict._problem("duplicated", f"{status.value} applied twice in the database")
        elif not moved_back and status not in expected:
            verdict._problem("unexpected", f"database recorded {status.value}, which the fate cannot lead to")
        recorded.append(status)
    required = required_statuses(verdict.fate)
    for status in required:
        if status not in recorded:
            verdict._problem("lost", f"{status.value} was never applied in the database")
    if recorded and recorded[-1] is not final:
        verdict._problem("lost", f"final {final.value} never reached the database (last: {recorded[-1].value})")
    skipped = [s.value for s in expected if s not in recorded and s not in required and s is not final]
    if skipped:
        verdict.marks.append(f"database skipped {', '.join(skipped)} (the carrier moved on before it was recorded)")
    return recorded


def _judge_omnitron(
    verdict: Verdict, expected: tuple[ShipmentStatus, ...], recorded: list, omnitron: Mapping[int, Sequence[Call]]
) -> None:
    final = expected[-1]
    if not omnitron:
        verdict._problem("lost", "the package names no order item to look up in Omnitron")
    for item, calls in sorted(omnitron.items()):
        calls = [tuple(call) for call in calls]
        verdict.relays += len(calls)
        if not calls:
            verdict._problem("lost", f"item {item}: nothing reached Omnitron")
            continue
        distinct = [call for n, call in enumerate(calls) if n == 0 or call != calls[n - 1]]
        repeats = len(calls) - len(distinct)
        if repeats:
            verdict.repeated += repeats
            twice = sorted({call[1] for n, call in enumerate(calls) if n and call == calls[n - 1]})
            verdict.marks.append(f"item {item}: {repeats} repeated relay(s) of {', '.join(twice)}")
        seen: list[ShipmentStatus] = []
        for call in distinct:
            status = status_of_call(call)
            if status is None:
                verdict._problem("unexpected", f"item {item}: Omnitron got {call}, no status maps to it")
                continue
            if status in seen:
                verdict._problem("regressed", f"item {item}: Omnitron saw {status.value} again after {seen[-1].value}")
            elif seen and (seen[-1] in FINAL_STATUSES or RANK[status] <= RANK[seen[-1]]):
                verdict._problem("regressed", f"item {item}: Omnitron saw {status.value} after {seen[-1].value}")
            elif recorded and status not in recorded:
                verdict._problem(
                    "unexpected", f"item {item}: Omnitron got {status.value}, which the database never recorded"
                )
            seen.append(status)
        if final not in seen:  # reached, then overwritten, is a regression (above)
            last = seen[-1].value if seen else "nothing"
            verdict._problem("lost", f"item {item}: final {final.value} never reached Omnitron (last: {last})")
        skipped = [s.value for s in recorded if s not in seen and s is not final]
        if skipped:
            verdict.marks.append(f"item {item}: Omnitron skipped {', '.join(skipped)} (a newer change went first)")


def _judge_relays(
    verdict: Verdict, rows: list[HistoryRow], relays: list[Relay], omnitron: Mapping[int, Sequence[Call]]
) -> None:
    """The publisher's log: every stored change handled once, sent or skipped as stale."""
    by_sequence: dict[int, list[str]] = {}
    for relay in relays:
        by_sequence.setdefault(relay.sequence, []).append(relay.outcome)
    stale = []
    for row in rows:
        outcomes = by_sequence.pop(row.sequence, [])
        if not outcomes:
            verdict._problem("lost", f"change {row.sequence} ({row.status}) never reached the Omnitron publisher")
        elif len(outcomes) > 1:
            verdict._problem(
                "duplicated",
                f"change {row.sequence} ({row.status}) relayed {len(outcomes)} times: {', '.join(outcomes)}",
            )
        if "skipped_stale" in outcomes:
            stale.append(row.status)
        status = _status(row.status)
        if "sent" in outcomes and status is not None:
            for item, calls in sorted(omnitron.items()):
                if omnitron_call(status) not in [tuple(call) for call in calls]:
                    verdict._problem(
                        "lost", f"change {row.sequence} ({row.status}) is logged as sent, but item {item} never got it"
                    )
    for sequence, outcomes in sorted(by_sequence.items()):
        verdict._problem(
            "unexpected", f"relay of change {sequence} ({', '.join(outcomes)}), which the database does not hold"
        )
    if stale:
        verdict.marks.append(f"publisher skipped {', '.join(stale)} as stale")
