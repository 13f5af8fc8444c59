"""Pooled connections: pinged only after sitting idle, and a dropped one costs one failed attempt at most."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

import shared.db
from shared.db import make_engine


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar()


def terminate(database_url: str, pid: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def count_pings(engine, monkeypatch) -> list:
    pings: list = []
    real = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda connection: pings.append(connection) or real(connection))
    return pings


def test_a_connection_used_moments_ago_is_not_pinged_again(engine, monkeypatch):
    backend_pid(engine)
    pings = count_pings(engine, monkeypatch)

    backend_pid(engine)
    assert pings == []

    monkeypatch.setattr(shared.db, "PING_AFTER_IDLE_S", 0.0)
    backend_pid(engine)
    assert len(pings) == 1


def test_an_idle_connection_the_server_dropped_is_replaced_before_use(engine, database_url, monkeypatch):
    terminate(database_url, backend_pid(engine))
    monkeypatch.setattr(shared.db, "PING_AFTER_IDLE_S", 0.0)

    assert backend_pid(engine) > 0


def test_a_recently_used_connection_the_server_dropped_fails_once_then_the_pool_reconnects(engine, database_url):
    terminate(database_url, backend_pid(engine))

    with pytest.raises(OperationalError):
        backend_pid(engine)
    assert backend_pid(engine) > 0
