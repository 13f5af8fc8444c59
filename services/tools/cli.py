"""The ``oms-shipments`` command line (CONTRACT.md §6)."""

from __future__ import annotations

import errno
import sys
from contextlib import contextmanager
from importlib.metadata import version as installed_version
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from services.runtime.settings import ServiceSettings
from services.runtime.startup import StartupProblem, explain
from services.tools.cli_text import shown
from services.tools.dlq_cli import dlq_app
from shared.logging import configure_logging, get_logger, logging_configured

STARTUP_PROBLEM_EXIT = 2


class OperatorCli(typer.Typer):
    """The command line, with start-up and configuration problems said in one line.

    A broker or database that cannot be reached, settings or a carriers file that do not
    parse: one line on stderr (through the logger, so a JSON log stream stays JSON, with the
    same redaction) that says what is wrong and what to do, and exit code 2. Anything else
    is a fault of ours and keeps its traceback.
    """

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            line = explain(exc, _current_settings or _settings_if_valid())
            if line is None:
                raise
            if not logging_configured():
                configure_logging()
            get_logger().error(line)
            sys.exit(STARTUP_PROBLEM_EXIT)


app = OperatorCli(
    help="Event-driven shipments for an OMS: packer, shipper, tracker, Omnitron publisher.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
topology_app = typer.Typer(help="The broker topology.", no_args_is_help=True)
docs_app = typer.Typer(help="Generated documentation.", no_args_is_help=True)
contracts_app = typer.Typer(help="What crosses the wire, as documents.", no_args_is_help=True)
standin_app = typer.Typer(help="Contract-following stand-ins for a carrier and Omnitron.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(topology_app, name="topology")
app.add_typer(standin_app, name="standin")
app.add_typer(dlq_app, name="dlq")
app.add_typer(contracts_app, name="contracts")
app.add_typer(docs_app, name="docs")

console = Console(stderr=True)
_current_settings: ServiceSettings | None = None  # for naming the broker or database in a start-up problem


def _settings() -> ServiceSettings:
    global _current_settings
    settings = ServiceSettings()
    configure_logging(settings.log_level, settings.log_format)
    from shared.logging import register_secrets

    register_secrets(*settings.secrets())
    _current_settings = settings
    return settings


def _settings_if_valid() -> ServiceSettings | None:
    try:
        return ServiceSettings()
    except Exception:  # the problem being explained may be these very settings
        return None


def _print_version(asked: bool) -> None:
    if asked:
        print(f"oms-shipments {installed_version('oms-shipments')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    pass


def complete_service(incomplete: str) -> list[str]:
    """The service names for the shell's completion of ``run``."""
    from services.runtime.registry import SERVICE_NAMES

    return [name for name in (*SERVICE_NAMES, "all") if name.startswith(incomplete)]


@db_app.command("upgrade")
def db_upgrade(
    revision: str = typer.Argument("head", help="Target revision."),
    create: bool = typer.Option(False, "--create", help="Create the database first when it does not exist."),
) -> None:
    """Create or migrate the database schema."""
    from services.migrations import create_database, upgrade

    settings = _settings()
    database_url = settings.database_url.get_secret_value()
    if create and create_database(database_url):
        console.print(Text.assemble(("created the database", "green")))
    upgrade(database_url, revision)
    console.print(Text.assemble(("database at revision ", "green"), (shown(revision), "green")))


@topology_app.command("declare")
def topology_declare() -> None:
    """Declare the exchange, work queues, bindings, retry and dead-letter queues."""
    from services.runtime.bootstrap import topology
    from shared.broker import connect

    settings = _settings()
    with connect(settings.amqp_url.get_secret_value()) as connection:
        names = topology(settings).declare(connection)
    for name in names:
        console.print(f"declared {name}")


@contracts_app.command("export")
def contracts_export(directory: Path = typer.Argument(..., help="Where to write the documents.")) -> None:
    """Write the events' JSON Schemas and an AsyncAPI 3.0 document of the broker topology."""
    from services.tools.asyncapi import export_contracts

    for path in export_contracts(directory):
        console.print(f"wrote {path}")


@docs_app.command("configuration")
def docs_configuration(output: Path = typer.Option(Path("docs/configuration.md"), help="Where to write it.")) -> None:
    """Write the configuration reference, generated from the settings model."""
    from services.tools.config_reference import configuration_reference

    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(configuration_reference())
    console.print(f"wrote {output}")


@app.command("run")
def run(
    service: str = typer.Argument(
        ..., help="packer, shipper, tracker, omnitron-publisher, or all", autocompletion=complete_service
    ),
    concurrency: int = typer.Option(None, "--concurrency", "-c", min=1, help="Handler threads per consumer."),
) -> None:
    """Run one service (or all of them in one process) until SIGTERM/SIGINT."""
    from services.runtime.bootstrap import SERVICE_NAMES, bootstrap
    from services.runtime.bootstrap import run as run_services

    names = list(SERVICE_NAMES) if service == "all" else [service]
    if any(name not in SERVICE_NAMES for name in names):
        raise typer.BadParameter(f"unknown service {service!r}; choose from {', '.join(SERVICE_NAMES)} or all")
    settings = _settings()
    if concurrency:
        settings = settings.model_copy(update={"concurrency": concurrency})
    raise typer.Exit(run_services(bootstrap(settings), names))


@app.command("publish")
def publish(source: str = typer.Argument(..., help="A file of events, one JSON per line, or - for stdin.")) -> None:
    """Validate events, then publish them to oms.events with publisher confirms."""
    from services.tools.publishing import EventsReturned, publish_lines

    settings = _settings()
    lines = sys.stdin.read().splitlines() if source == "-" else Path(source).read_text().splitlines()
    try:
        published, errors = publish_lines(settings.amqp_url.get_secret_value(), lines)
    except EventsReturned as returned:
        console.print(str(returned), style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    for number, reason in errors:
        console.print(Text.assemble((f"line {number}: ", "red"), (shown(reason), "red")))
    if errors:
        console.print(f"[red]{len(errors)} invalid; nothing published[/red]")
        raise typer.Exit(1)
    console.print(f"[green]published {published} events[/green]")


@app.command("status")
def status(package_id: str) -> None:
    """A package's shipment, its status history and its Omnitron relays."""
    from services.tools.timeline import render_status

    settings = _settings()
    if not render_status(settings, package_id, Console()):
        raise typer.Exit(1)


@contextmanager
def _listening_on(host: str, port: int):
    """A stand-in that cannot take its address (another process holds it) is a start-up problem."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        raise StartupProblem(f"cannot listen on {host}:{port}: {exc.strerror}; choose another with --port") from None


@standin_app.command("carrier")
def standin_carrier(
    host: str = "127.0.0.1",
    port: int = 8081,
    username: str = "user",
    password: str = typer.Option("secret", envvar="SANDBOX_CARRIER_PASSWORD"),
) -> None:
    """Serve the sandbox carrier (the Shipment Flows protocol, scripted fates)."""
    from services.standins import serve_forever
    from services.standins.sandbox_carrier import SandboxCarrier

    _settings()
    with _listening_on(host, port):
        serve_forever(SandboxCarrier(host, port, username, password), "sandbox carrier")


@standin_app.command("omnitron")
def standin_omnitron(
    host: str = "127.0.0.1",
    port: int = 8082,
    token: str = typer.Option("secret-token", envvar="OMS_OMNITRON_TOKEN"),
) -> None:
    """Serve the Omnitron stand-in, which records every call (GET /_standin/calls)."""
    from services.standins import serve_forever
    from services.standins.omnitron import OmnitronStandIn

    _settings()
    with _listening_on(host, port):
        serve_forever(OmnitronStandIn(host, port, token), "omnitron stand-in")


@app.command("demo")
def demo(
    packages: int = typer.Option(50, "--packages", "-n", min=1, help="How many packages to send through."),
    amqp_url: str = typer.Option("memory://", help="The broker; the default is the embedded one."),
    database_url: str = typer.Option(None, help="The database; the default is a new SQLite file."),
    timeout: float = typer.Option(300, help="Give up after this many seconds."),
) -> None:
    """The whole pipeline in one process, with a sandbox carrier and an Omnitron stand-in."""
    from services.tools.demo import Demo

    configure_logging("WARNING", "console")
    out = Console()
    ok = Demo(packages, amqp_url, database_url, out).run(timeout)
    out.print()
    out.print(
        "[green]every package is final and relayed to Omnitron[/green]"
        if ok
        else "[red]timed out before every package was final[/red]"
    )
    raise typer.Exit(0 if ok else 1)


from services.tools.commands_cli import register_commands  # noqa: E402  (it uses this module's helpers)

register_commands(app)  # cancel, update-info, set-status, label, stale


def main() -> None:  # pragma: no cover
    app()
