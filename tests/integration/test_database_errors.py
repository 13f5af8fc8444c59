"""What a real PostgreSQL answers, and what the failure policy makes of it.

Every error here is raised by the server (or by psycopg refusing a value) through an
engine made by ``shared.db.make_engine``, as the services make theirs: nothing is a
hand-made exception object.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.db import SessionBounds, make_engine
from shared.failure import RetryPolicy, Verdict, decide

POLICY = RetryPolicy(max_attempts=3, delays_s=(1, 5))
SECRET_ADDRESS = "Baker Street 221B, flat 7"
SECRET_PHONE = "+90 555 123 45 67"

BOUNDS = SessionBounds(
    connect_timeout_s=3,
    keepalives_idle_s=5,
    keepalives_interval_s=2,
    keepalives_count=2,
    statement_timeout_s=0.3,
    lock_timeout_s=0.2,
    idle_in_transaction_timeout_s=1,
)


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url, bounds=BOUNDS)
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE TABLE people (id int PRIMARY KEY, name varchar(8), "
                "address text CHECK (length(address) < 10), phone text, age smallint)"
            )
        )
        connection.execute(text("CREATE TABLE notes (body text)"))
        connection.execute(text("CREATE INDEX ix_notes_body ON notes (body)"))
    yield engine
    engine.dispose()


def failure(engine, sql: str, params: dict | None = None, *, read_only: bool = False) -> DBAPIError:
    with pytest.raises(DBAPIError) as caught:
        with engine.begin() as connection:
            if read_only:
                connection.execute(text("SET TRANSACTION READ ONLY"))
            connection.execute(text(sql), params or {})
    return caught.value


def raised_by_server(engine, sqlstate: str) -> DBAPIError:
    """An error the server raises with exactly this SQLSTATE (for states a test cannot provoke,
    such as a server refusing connections while it starts)."""
    return failure(engine, f"DO $$ BEGIN RAISE EXCEPTION 'raised as {sqlstate}' USING ERRCODE = '{sqlstate}'; END $$")


def verdicts(error: BaseException) -> tuple[Verdict, Verdict]:
    """The verdict on a first attempt, and on the attempt that would exhaust the policy."""
    return decide(error, 0, POLICY).verdict, decide(error, POLICY.max_attempts - 1, POLICY).verdict


def held_row_lock(database_url: str):
    """Another session holding people row 1 locked, as a frozen process would."""
    holder = psycopg.connect(database_url)
    holder.execute("INSERT INTO people (id) VALUES (1) ON CONFLICT DO NOTHING")
    holder.commit()
    holder.execute("SELECT * FROM people WHERE id = 1 FOR UPDATE")
    return holder


# ---- the database away or busy: retried, without limit -------------------------------------


def test_a_standby_that_is_read_only_during_a_failover_is_waited_for_without_limit(engine):
    error = failure(engine, "INSERT INTO people (id) VALUES (1)", read_only=True)

    assert isinstance(error.orig, psycopg.errors.ReadOnlySqlTransaction)
    assert verdicts(error) == (Verdict.RETRY, Verdict.RETRY)


@pytest.mark.parametrize(
    "sqlstate, driver_class",
    [
        ("57P01", psycopg.errors.AdminShutdown),
        ("57P03", psycopg.errors.CannotConnectNow),
        ("40001", psycopg.errors.SerializationFailure),
        ("40P01", psycopg.errors.DeadlockDetected),
        ("53300", psycopg.errors.TooManyConnections),
    ],
)
def test_a_server_shutting_down_starting_overloaded_or_in_contention_is_waited_for_without_limit(
    engine, sqlstate, driver_class
):
    error = raised_by_server(engine, sqlstate)

    assert type(error.orig) is driver_class
    assert verdicts(error) == (Verdict.RETRY, Verdict.RETRY)


def test_a_session_the_server_terminated_is_waited_for_without_limit(engine, database_url):
    with engine.connect() as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(DBAPIError) as caught:
            connection.execute(text("SELECT 1"))

    assert verdicts(caught.value) == (Verdict.RETRY, Verdict.RETRY)


def test_a_lock_wait_past_lock_timeout_is_retried_without_limit(engine, database_url):
    holder = held_row_lock(database_url)
    try:
        started = time.monotonic()
        error = failure(engine, "UPDATE people SET age = 1 WHERE id = 1")
        waited = time.monotonic() - started
    finally:
        holder.close()

    assert isinstance(error.orig, psycopg.errors.LockNotAvailable)
    assert waited < 5
    assert verdicts(error) == (Verdict.RETRY, Verdict.RETRY)


def test_a_statement_past_statement_timeout_is_retried_a_while_then_dead_lettered(engine):
    error = failure(engine, "SELECT pg_sleep(5)")

    assert isinstance(error.orig, psycopg.errors.QueryCanceled)
    assert verdicts(error) == (Verdict.RETRY, Verdict.DEAD_LETTER)


def test_no_pooled_connection_free_in_time_is_waited_for_without_limit(database_url):
    engine = make_engine(database_url, pool_size=1, bounds=BOUNDS)
    engine.pool._max_overflow = 0
    engine.pool._timeout = 0.2
    try:
        with engine.connect():
            with pytest.raises(PoolTimeout) as caught:
                engine.connect()
    finally:
        engine.dispose()

    assert verdicts(caught.value) == (Verdict.RETRY, Verdict.RETRY)


# ---- data the database can never store: dead-lettered at once -----------------------------


def test_an_index_row_too_large_is_dead_lettered_at_once(engine):
    import secrets

    error = failure(engine, "INSERT INTO notes (body) VALUES (:body)", {"body": secrets.token_hex(8000)})

    assert isinstance(error.orig, psycopg.errors.ProgramLimitExceeded)
    decision = decide(error, 0, POLICY)
    assert decision.verdict is Verdict.DEAD_LETTER
    assert "SQLSTATE 54000" in decision.reason


@pytest.mark.parametrize(
    "sql, params, driver_class",
    [
        (
            "INSERT INTO people (id, name) VALUES (1, :v)",
            {"v": "much too long"},
            psycopg.errors.StringDataRightTruncation,
        ),
        ("INSERT INTO people (id, age) VALUES (1, :v)", {"v": 70_000}, psycopg.errors.NumericValueOutOfRange),
        ("SELECT convert_from(:v, 'UTF8')", {"v": b"\xff\xfe"}, psycopg.errors.CharacterNotInRepertoire),
        ("INSERT INTO people (id, name) VALUES (1, :v)", {"v": "nul\x00"}, psycopg.DataError),
    ],
    ids=["string too long", "number out of range", "invalid byte sequence", "NUL byte"],
)
def test_a_value_the_database_cannot_store_is_dead_lettered_at_once_with_the_reason(engine, sql, params, driver_class):
    error = failure(engine, sql, params)

    assert isinstance(error.orig, driver_class)
    decision = decide(error, 0, POLICY)
    assert decision.verdict is Verdict.DEAD_LETTER
    assert decision.reason.startswith("database error")


# ---- no parameter values in what is logged or dead-lettered --------------------------------


def test_a_failed_statement_s_parameters_are_not_written_into_the_error_s_text(engine):
    error = failure(
        engine,
        "INSERT INTO people (id, name, phone) VALUES (1, :name, :phone)",
        {"name": "much too long", "phone": SECRET_PHONE},
    )

    assert "[SQL parameters hidden" in str(error)
    assert SECRET_PHONE not in str(error)
    assert SECRET_PHONE not in decide(error, 0, POLICY).reason


def test_a_refused_row_s_values_named_by_the_server_stay_out_of_the_dead_letter_reason(engine):
    error = failure(
        engine,
        "INSERT INTO people (id, address, phone) VALUES (1, :address, :phone)",
        {"address": SECRET_ADDRESS, "phone": SECRET_PHONE},
    )
    decision = decide(error, POLICY.max_attempts - 1, POLICY)

    assert SECRET_ADDRESS in str(error.orig), "the server's DETAIL names the failing row"
    assert decision.verdict is Verdict.DEAD_LETTER
    assert SECRET_ADDRESS not in decision.reason and SECRET_PHONE not in decision.reason
    assert "CheckViolation (SQLSTATE 23514)" in decision.reason


# ---- the bounds every session starts with --------------------------------------------------


def test_every_session_starts_with_its_timeouts_keepalives_and_a_name_naming_the_process(engine):
    with engine.connect() as connection:
        settings = dict(
            connection.execute(
                text(
                    "SELECT name, setting FROM pg_settings WHERE name IN "
                    "('statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout')"
                )
            ).all()
        )
        name = connection.execute(
            text("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        ).scalar()
        keepalives = connection.connection.dbapi_connection.info.get_parameters()

    assert settings == {
        "statement_timeout": "300",
        "lock_timeout": "200",
        "idle_in_transaction_session_timeout": "1000",
    }
    import os

    assert name == f"oms-shipments[{os.getpid()}]"
    assert (keepalives["keepalives_idle"], keepalives["keepalives_count"], keepalives["connect_timeout"]) == (
        "5",
        "2",
        "3",
    )


def test_a_session_left_idle_in_its_transaction_is_ended_by_the_server_and_its_locks_freed(engine, database_url):
    connection = engine.connect()
    transaction = connection.begin()
    connection.execute(text("INSERT INTO people (id) VALUES (2)"))
    connection.execute(text("SELECT * FROM people WHERE id = 2 FOR UPDATE"))
    time.sleep(BOUNDS.idle_in_transaction_timeout_s + 1)  # the holder is frozen: no statement, no commit

    with psycopg.connect(database_url, autocommit=True) as other:
        other.execute("SET lock_timeout = '2s'")
        other.execute("INSERT INTO people (id) VALUES (2)")  # the lock is gone with the session
    with pytest.raises(DBAPIError) as caught:
        transaction.commit()
    connection.close()
    assert verdicts(caught.value) == (Verdict.RETRY, Verdict.RETRY)


def test_the_url_s_own_connection_parameters_win_over_the_defaults(database_url):
    engine = make_engine(
        database_url + "?application_name=operator-chosen&options=-c%20lock_timeout%3D7s", bounds=BOUNDS
    )
    try:
        with engine.connect() as connection:
            lock_timeout = connection.execute(text("SHOW lock_timeout")).scalar()
            statement_timeout = connection.execute(text("SHOW statement_timeout")).scalar()
            name = connection.execute(text("SHOW application_name")).scalar()
    finally:
        engine.dispose()

    assert (lock_timeout, statement_timeout, name) == ("7s", "300ms", "operator-chosen")
