"""Start-up and configuration problems, as one line a person can act on.

A traceback says where in the code something failed; whoever starts a command needs to
know what is wrong and what to do about it. :func:`explain` turns the failures a command
meets before it has done anything (settings that do not parse, a missing or invalid
carriers file, a broker or database that is unreachable, refuses the login or lacks the
vhost or database) into that one line; anything else is a fault of ours and keeps its
traceback. :func:`check_run` makes ``run`` meet those failures at once, before any
worker starts, instead of in a reconnect loop that would retry them forever.
"""

from __future__ import annotations

import socket

import amqp.exceptions
import kombu.exceptions
import pika.exceptions
import psycopg
import pydantic
import sqlalchemy.exc
from sqlalchemy import Engine, text

from services.carriers.directory import CarriersFileError
from services.runtime.settings import ServiceSettings
from shared.broker import connect, is_embedded
from shared.redaction import redact_text

BROKER_TIMEOUT_S = 5  # a broker that has not answered by then will not answer a person waiting either


class StartupProblem(Exception):
    """What is wrong and what to do, already said in words."""


def check_run(settings: ServiceSettings, engine: Engine, services: list[str]) -> None:
    """Everything ``run`` needs before it starts a worker: raises :class:`StartupProblem`."""
    if "omnitron-publisher" in services and not (settings.omnitron_url and settings.omnitron_token):
        raise StartupProblem(
            "the omnitron-publisher needs OMS_OMNITRON_URL and OMS_OMNITRON_TOKEN: set both "
            "(`oms-shipments standin omnitron` serves a stand-in)"
        )
    url = settings.amqp_url.get_secret_value()
    if not is_embedded(url):
        with connect(url) as connection:
            connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_S)
    with engine.connect() as connection:
        has_schema = connection.dialect.has_table(connection, "alembic_version")
        if has_schema:
            has_schema = connection.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() > 0
    if not has_schema:
        raise StartupProblem(f"the database at {engine.url} has no schema: run `oms-shipments db upgrade`")


def explain(exc: BaseException, settings: ServiceSettings | None) -> str | None:
    """The one line for a start-up or configuration failure, secrets hidden; None for anything else."""
    line = _sentence(exc, settings)
    return None if line is None else redact_text(" ".join(line.split()))


def _sentence(exc: BaseException, settings: ServiceSettings | None) -> str | None:
    if isinstance(exc, StartupProblem):
        return str(exc)
    if isinstance(exc, pydantic.ValidationError):
        return _invalid_settings(exc)
    if isinstance(exc, CarriersFileError):
        named = (
            str(exc)
            if str(exc).startswith("carriers file") or settings is None
            else f"carriers file {settings.carriers_file}: {exc}"
        )
        return f"{named}; the file's format is in docs/configuration.md"
    database = _database_failure(exc)
    if database is not None:
        where = settings.database_url.get_secret_value() if settings else "OMS_DATABASE_URL"
        return _database_sentence(database, where)
    if _is_broker_failure(exc):
        where = settings.amqp_url.get_secret_value() if settings else "OMS_AMQP_URL"
        return _broker_sentence(exc, where)
    return None


def _invalid_settings(exc: pydantic.ValidationError) -> str:
    # The values themselves are left out: a mistyped one may be a secret.
    problems = "; ".join(
        f"OMS_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}" for error in exc.errors()
    )
    return f"invalid configuration: {problems}; fix it in the environment or in .env (docs/configuration.md)"


def _database_failure(exc: BaseException) -> str | None:
    """The driver's message when ``exc`` is PostgreSQL or SQLite refusing or not answering."""
    if isinstance(exc, sqlalchemy.exc.OperationalError):
        return str(exc.orig)
    if isinstance(exc, psycopg.OperationalError):
        return str(exc)
    return None


def _database_sentence(message: str, where: str) -> str:
    detail = message.splitlines()[0].removeprefix("connection failed: ")
    detail = detail.rsplit("failed: ", 1)[-1].replace("FATAL:", "").strip()
    if "does not exist" in detail and "database" in detail:
        return f"{detail} at {where}: create it with `oms-shipments db upgrade --create`"
    if "authentication failed" in detail or "no pg_hba.conf entry" in detail or "password" in detail:
        return f"the database at {where} refused the login ({detail}): check the user and password in OMS_DATABASE_URL"
    return f"cannot use the database at {where}: {detail}; start PostgreSQL or fix OMS_DATABASE_URL"


def _is_broker_failure(exc: BaseException) -> bool:
    # kombu wraps what the socket says (refused, unknown host, timed out); amqp raises the
    # broker's own refusals of the login and of the vhost as they are. The dead-letter tools
    # speak pika, which raises an unknown host name as the resolver's error.
    return isinstance(
        exc,
        (
            kombu.exceptions.OperationalError,
            amqp.exceptions.AccessRefused,
            amqp.exceptions.NotAllowed,
            pika.exceptions.AMQPConnectionError,
            socket.gaierror,
        ),
    )


def _broker_sentence(exc: BaseException, where: str) -> str:
    if isinstance(exc, kombu.exceptions.OperationalError) and exc.__cause__ is not None:
        exc = exc.__cause__  # kombu's wrapper around the refusal itself
    if isinstance(exc, (amqp.exceptions.AccessRefused, pika.exceptions.ProbableAuthenticationError)):
        return f"the broker at {where} refused the login: check the user and password in OMS_AMQP_URL"
    if isinstance(exc, amqp.exceptions.NotAllowed):
        return (
            f"the broker at {where} refused the vhost ({exc.reply_text}): create it with "
            f"`rabbitmqctl add_vhost` and `rabbitmqctl set_permissions`, or fix OMS_AMQP_URL"
        )
    detail = str(exc) or type(exc).__name__
    return f"cannot reach the broker at {where}: {detail}; start RabbitMQ or fix OMS_AMQP_URL"
