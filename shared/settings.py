"""Configuration, read from ``OMS_*`` environment variables and an optional ``.env``.

What every process reads: the broker, the database, retries, the relay, metrics and logs.
A service's own settings are its own (``services/<name>/settings.py``, the same ``OMS_``
names); ``services/runtime/settings.py`` puts them together.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: How every settings model of the project is read: ``OMS_<NAME>`` variables, then a ``.env``.
SOURCES = SettingsConfigDict(env_prefix="OMS_", env_file=".env", extra="ignore")


class Settings(BaseSettings):
    model_config = SOURCES

    amqp_url: SecretStr = Field(
        SecretStr("amqp://guest:guest@localhost:5672//"),
        description="The broker. `memory://` runs the embedded, in-process broker.",
    )
    database_url: SecretStr = Field(
        SecretStr("sqlite:///oms-shipments.sqlite3"),
        description="SQLAlchemy URL. `postgresql://` means psycopg 3; the default is a SQLite "
        "file for the embedded mode (one process only).",
    )
    max_retry_after_s: float = Field(
        3600.0,
        gt=0,
        description="The longest a carrier's or Omnitron's `Retry-After` is honoured, in seconds "
        "(also the longest a tracker pauses a carrier); a larger, negative or unreadable value waits this "
        "long and is logged; also the most a retry copy's not-before can hold a message back.",
    )

    queue_type: Literal["classic", "quorum"] = Field(
        "classic", description="Type of the queues `topology declare` creates."
    )
    prefetch: int = Field(
        32,
        ge=1,
        description="Unacknowledged messages a consumer holds at once (a batching one holds at least two batches).",
    )
    concurrency: int = Field(
        1,
        ge=1,
        description="Handler threads per consumer; 4 suits the shipper and the Omnitron publisher "
        "(their handlers wait on HTTP). The Omnitron publisher hands each shipment to one thread, so its "
        "changes stay in order; other events may be handled out of order (each handler copes with that).",
    )
    batch_size: int = Field(
        100,
        ge=1,
        description="Messages a batching service (the packer) applies in one database "
        "transaction and acks together after its commit; 1 applies each message alone. A poison "
        "message still fails alone.",
    )
    max_attempts: int = Field(
        12,
        ge=1,
        description="Attempts of a transiently failing message before it is dead-lettered "
        "(Omnitron outages and events waiting for another are retried without limit).",
    )
    retry_delays_s: list[float] = Field(
        [1, 5, 30, 120, 600],
        description="Delay tiers for retries, in seconds: attempt n waits tier n (the last repeats).",
    )
    db_connect_timeout_s: float = Field(
        10,
        gt=0,
        description="PostgreSQL: how long opening a database connection may take (libpq "
        "`connect_timeout`, whole seconds, at least 2).",
    )
    db_keepalives_idle_s: float = Field(
        30,
        gt=0,
        description="PostgreSQL: after this long without traffic the connection sends TCP "
        "keepalives, so a database host that vanished is noticed instead of waited on for ever.",
    )
    db_keepalives_interval_s: float = Field(10, gt=0, description="PostgreSQL: seconds between TCP keepalives.")
    db_keepalives_count: int = Field(
        3, ge=1, description="PostgreSQL: unanswered TCP keepalives after which the connection is dead."
    )
    db_statement_timeout_s: float = Field(
        30,
        gt=0,
        description="PostgreSQL `statement_timeout`: the longest one statement may run (the "
        "hot path's batches take milliseconds); a longer one is cancelled and its work retried.",
    )
    db_lock_timeout_s: float = Field(
        10,
        gt=0,
        description="PostgreSQL `lock_timeout`: the longest a statement waits for a row or "
        "advisory lock another session holds; then that message is retried later, and the worker goes on.",
    )
    db_idle_in_transaction_timeout_s: float = Field(
        60,
        gt=0,
        description="PostgreSQL `idle_in_transaction_session_timeout`: a session that holds a "
        "transaction open this long without a statement (a frozen process) is ended by the server, and "
        "its locks with it. Longer than an Omnitron call with its retries, made under a shipment's lock.",
    )
    relay_hold_s: float = Field(
        15,
        gt=0,
        le=25,
        description="The longest an outbox relay holds its lock and its batch waiting "
        "on the broker: its wait for the broker's confirms and, on PostgreSQL, the idle-in-transaction "
        "timeout of its transaction (plus 5 s), after which a frozen relay's lock is freed and another "
        "process's relay takes over.",
    )
    relay_batch: int = Field(500, ge=1, description="Outbox rows published per relay round.")
    relay_idle_s: float = Field(0.1, gt=0, description="How often an idle outbox relay looks again.")
    metrics_port: int | None = Field(
        9100,
        ge=0,
        le=65535,
        description="Port of /metrics, /healthz and /readyz. When another process "
        "holds it, the next free port above it (up to 99 above); the first log line names the port taken. "
        "0 picks any free port; empty disables.",
    )
    metrics_host: str = Field(
        "0.0.0.0",
        description="Address /metrics, /healthz and /readyz listen on: every interface, so "
        "Prometheus and probes reach a container from outside it; `127.0.0.1` keeps them on the host "
        "(`::` for IPv6).",
    )
    log_level: str = Field("INFO", description="Log level.")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="`json`, `console`, or `auto`: console on a terminal, JSON otherwise."
    )

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _empty_disables(cls, value: object) -> object:
        # `OMS_METRICS_PORT=` (set, empty) is how a deployment turns the endpoints off.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("retry_delays_s")
    @classmethod
    def _at_least_one_delay(cls, value: list[float]) -> list[float]:
        if not value or any(v <= 0 for v in value):
            raise ValueError("retry_delays_s needs at least one positive delay")
        return value

    def secrets(self) -> list[str]:
        """Every secret value, for the log redactor."""
        from shared.redaction import secrets_in_url

        found = secrets_in_url(self.amqp_url.get_secret_value())
        found += secrets_in_url(self.database_url.get_secret_value())
        return [s for s in found if s]
