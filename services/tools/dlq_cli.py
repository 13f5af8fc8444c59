"""``oms-shipments dlq``: list, show, replay and purge dead letters (the logic is services/tools/dlq.py)."""

from __future__ import annotations

import functools
import inspect
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from services.tools import dlq
from services.tools.cli_text import literal, shown
from services.tools.dlq_model import DeadLetter, Selector, parse_duration
from shared import naming
from shared.logging import configure_logging, register_secrets
from shared.settings import Settings

dlq_app = typer.Typer(help="Inspect, replay and purge dead letters.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
TABLE_ROWS = 50  # a replay of thousands lists the first ones, then counts the rest

Queue = Annotated[
    Optional[str], typer.Option("--queue", "-q", help="A service (shipper) or its queue (oms-shipments.shipper.dlq).")
]
All = Annotated[bool, typer.Option("--all", help="Every service's dead-letter queue.")]
Type = Annotated[Optional[str], typer.Option("--type", help="Only this event type (the CloudEvent's type).")]
ErrorClass = Annotated[Optional[str], typer.Option("--error-class", help="Only this error class (x-oms-error-class).")]
PackageId = Annotated[
    Optional[str], typer.Option("--package-id", help="Only this package (the event's data.package_id).")
]
OlderThan = Annotated[
    Optional[str], typer.Option("--older-than", help="Only dead-lettered longer ago than this (45s, 10m, 2h, 1d).")
]
NewerThan = Annotated[
    Optional[str], typer.Option("--newer-than", help="Only dead-lettered within this (45s, 10m, 2h, 1d).")
]
Limit = Annotated[Optional[int], typer.Option("--limit", "-n", min=1, help="Take at most this many, oldest first.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Move nothing; list what would be taken.")]


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    register_secrets(*settings.secrets())
    # pika logs one failed connection five times over, traceback included; the command says it once.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    return settings


@contextmanager
def _broker():
    settings = _settings()
    try:
        connection = dlq.open_connection(settings.amqp_url.get_secret_value())
    except dlq.DlqError as exc:
        err.print(literal(exc, "red"))
        raise typer.Exit(2) from None
    try:
        yield connection
    except dlq.DlqError as exc:
        err.print(literal(exc, "red"))
        raise typer.Exit(1) from None
    finally:
        try:
            connection.close()
        except Exception:  # already gone: the broker returns what we held either way
            pass


def _queues(queue: str | None, all_queues: bool, required: bool) -> list[str]:
    if queue and all_queues:
        raise typer.BadParameter("give --queue or --all, not both")
    if queue:
        try:
            return [naming.dead_letter_queue(dlq.resolve_service(queue))]
        except dlq.DlqError as exc:
            raise typer.BadParameter(str(exc)) from None
    if required and not all_queues:
        raise typer.BadParameter("name a --queue, or pass --all for every dead-letter queue")
    return [naming.dead_letter_queue(service) for service in dlq.services_with_queues()]


def _selector(event_type, error_class, package_id, older_than, newer_than) -> Selector:
    try:
        return Selector(
            event_type,
            error_class,
            package_id,
            parse_duration(older_than) if older_than else None,
            parse_duration(newer_than) if newer_than else None,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@dataclass(frozen=True)
class Selection:
    """The dead letters a ``replay`` or ``purge`` takes: from which queues, which ones, how many."""

    queues: list[str]
    selector: Selector
    limit: int | None


def _selection(
    queue, all_queues, event_type, error_class, package_id, older_than, newer_than, limit: int | None
) -> Selection:
    return Selection(
        _queues(queue, all_queues, required=True),
        _selector(event_type, error_class, package_id, older_than, newer_than),
        limit,
    )


#: The options that select dead letters, as ``replay`` and ``purge`` both take them.
_SELECTION_OPTIONS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=option)
    for name, option, default in (
        ("queue", Queue, None),
        ("all_queues", All, False),
        ("event_type", Type, None),
        ("error_class", ErrorClass, None),
        ("package_id", PackageId, None),
        ("older_than", OlderThan, None),
        ("newer_than", NewerThan, None),
        ("limit", Limit, None),
    )
]


def _selecting(command: Callable[..., None]) -> Callable[..., None]:
    """Gives a command the selection options (before its own) and hands it what they select
    as ``selection``: the options are declared once, and judged once (``--queue`` or ``--all``
    required, durations parsed)."""
    own = [
        parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for parameter in inspect.signature(command, eval_str=True).parameters.values()
        if parameter.name != "selection"
    ]

    @functools.wraps(command)
    def run(**options) -> None:
        selection = _selection(**{parameter.name: options.pop(parameter.name) for parameter in _SELECTION_OPTIONS})
        command(selection=selection, **options)

    parameters = [*_SELECTION_OPTIONS, *own]
    run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    run.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return run


def _age(at: datetime | None) -> str:
    if at is None:
        return "-"
    seconds = int((datetime.now(timezone.utc) - at).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{at.isoformat(timespec='seconds')} ({seconds // size}{unit} ago)"
    return f"{at.isoformat(timespec='seconds')} ({max(seconds, 0)}s ago)"


def _letters_table(letters: list[DeadLetter], title: str | None = None) -> Table:
    table = Table("queue", "#", "message id", "type", "package", "error class", "reason", "failed", title=title)
    for letter in letters[:TABLE_ROWS]:
        table.add_row(
            literal(letter.queue),
            literal(letter.position),
            literal(letter.message_id),
            literal(letter.event_type),
            literal(letter.package_id),
            literal(letter.error_class),
            literal(letter.error_message),
            literal(_age(letter.dead_lettered_at)),
        )
    if len(letters) > TABLE_ROWS:
        table.caption = f"… and {len(letters) - TABLE_ROWS} more"
    return table


@dlq_app.command("list")
def list_queues(
    max_scan: Annotated[int, typer.Option(min=1, help="Read at most this many per queue for the summary.")] = 10_000,
) -> None:
    """Every dead-letter queue: how many, the oldest, the most common reasons."""
    table = Table("dead-letter queue", "count", "oldest failure", "reasons (error class × count)")
    with _broker() as connection:
        for queue in _queues(None, True, required=False):
            summary = dlq.summarize(connection, queue, max_scan)
            if not summary.exists:
                table.add_row(literal(queue), "-", "-", "(not declared)")
                continue
            reasons = ", ".join(f"{name} × {count}" for name, count in summary.reasons[:3])
            if len(summary.reasons) > 3:
                reasons += f", +{len(summary.reasons) - 3} more"
            if summary.scanned < summary.count:
                reasons += f" (first {summary.scanned} read)"
            table.add_row(literal(queue), literal(summary.count), literal(_age(summary.oldest)), literal(reasons))
    out.print(table)


@dlq_app.command("show")
def show(
    queue: Queue = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many messages.")] = 20,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many first.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for machines: every header, the body.")] = False,
) -> None:
    """Dead letters with their failure headers, oldest first, a page at a time."""
    letters: list[DeadLetter] = []
    skip = offset  # one page over the queues one after the other
    with _broker() as connection:
        for name in _queues(queue, False, required=False):
            depth = dlq.queue_depth(connection, name) or 0
            if skip >= depth:
                skip -= depth
                continue
            letters += dlq.peek(connection, name, limit=limit - len(letters), offset=skip)
            skip = 0
            if len(letters) >= limit:
                break
    if as_json:
        print(json.dumps([letter.as_dict() for letter in letters], indent=2))
        return
    if not letters:
        out.print("no dead letters")
        return
    for letter in letters:
        out.print(
            Text.assemble(
                (shown(letter.queue), "bold"),
                f" #{letter.position}  message ",
                shown(letter.message_id),
                "  ",
                shown(letter.event_type),
                "  package ",
                shown(letter.package_id),
            )
        )
        table = Table("header", "value", show_header=False, box=None, padding=(0, 2))
        for key, value in sorted(letter.headers.items(), key=lambda item: str(item[0])):
            table.add_row(literal(key), literal(value))
        out.print(table)


def _report(outcomes: list[dlq.Outcome], verb: str, dry_run: bool) -> None:
    """``verb``: "replay" or "purge"."""
    done = f"would {verb}" if dry_run else verb + ("d" if verb.endswith("e") else "ed")
    taken = [letter for outcome in outcomes for letter in outcome.taken]
    if taken:
        out.print(_letters_table(taken, title=done))
    for outcome in outcomes:
        where = f" to {shown(outcome.target)}" if outcome.target else ""
        left = outcome.depth - (0 if dry_run else len(outcome.taken))
        out.print(Text(f"{shown(outcome.queue)}: {done} {len(outcome.taken)}{where}; {left} left in the queue"))
    if dry_run:
        out.print("[yellow]dry run: nothing was moved[/yellow]")


@dlq_app.command("replay")
@_selecting
def replay(
    selection: Selection,
    rate: Annotated[
        Optional[float], typer.Option("--rate", min=0.001, help="At most this many messages a second.")
    ] = None,
    dry_run: DryRun = False,
) -> None:
    """Send dead letters back to their service's work queue, retry count reset, in their order."""
    moved = 0

    def count(_letter) -> None:
        nonlocal moved
        moved += 1

    with _broker() as connection:
        try:
            outcomes = dlq.replay(
                connection,
                selection.queues,
                selection.selector,
                limit=selection.limit,
                rate=rate,
                dry_run=dry_run,
                on_taken=count,
            )
        except dlq.DlqError:
            if moved and not dry_run:
                err.print(f"[yellow]{moved} dead letter(s) were replayed before this error[/yellow]")
            raise
    _report(outcomes, "replay", dry_run)


@dlq_app.command("purge")
@_selecting
def purge(
    selection: Selection,
    dry_run: DryRun = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete dead letters for good; asks first unless --yes."""
    queues, selector, limit = selection.queues, selection.selector, selection.limit
    with _broker() as connection:
        if not dry_run and not yes:
            planned = dlq.purge(connection, queues, selector, limit=limit, dry_run=True)
            matching = sum(len(outcome.taken) for outcome in planned)
            if not matching:
                out.print("nothing matches; nothing purged")
                return
            out.print(_letters_table([letter for o in planned for letter in o.taken], title="to be purged"))
            # What is purged is what matches when the purge runs, read again after the answer.
            typer.confirm(f"Delete {matching} dead letter(s) for good?", abort=True, err=True)
        outcomes = dlq.purge(connection, queues, selector, limit=limit, dry_run=dry_run)
    _report(outcomes, "purge", dry_run)
