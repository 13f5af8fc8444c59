"""The health server on a host shared with other processes: a free port found, fixed answers given."""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from shared.health import REQUEST_TIMEOUT_S, CannotListen, HealthServer, bind_first_free

HOST = "127.0.0.1"


@contextmanager
def held_port():
    """A port some other process holds (a listening socket of the test's own)."""
    holder = socket.socket()
    holder.bind((HOST, 0))
    holder.listen()
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


@contextmanager
def serving(port: int, **checks):
    """A health server started from ``port``, running until the block ends (then closed by its stop)."""
    stop = threading.Event()
    server = HealthServer(port=port, host=HOST, stop=stop, checks=checks)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(10)


def test_a_taken_port_is_passed_over_for_the_next_free_one_and_two_servers_never_share_one():
    with held_port() as taken, serving(taken) as first, serving(taken) as second:
        assert taken < first.port < taken + 100 and taken < second.port < taken + 100
        assert first.port != second.port
        assert httpx.get(f"http://{HOST}:{second.port}/healthz", timeout=10).status_code == 200


def test_port_zero_still_means_any_free_port():
    with serving(0) as server:
        assert server.port > 0


def test_a_search_that_finds_every_port_taken_says_which_ones():
    with held_port() as taken, pytest.raises(CannotListen) as refused:
        bind_first_free(HOST, taken, BaseHTTPRequestHandler, search=1)
    assert f"every port from {taken} to {taken} on {HOST} is taken" in str(refused.value)


def test_an_address_not_on_this_machine_is_refused_at_once_with_the_settings_to_change():
    with pytest.raises(CannotListen) as refused:
        bind_first_free("192.0.2.1", 9100, BaseHTTPRequestHandler)  # TEST-NET-1: never local
    assert "cannot listen on 192.0.2.1:9100" in str(refused.value) and "OMS_METRICS_HOST" in str(refused.value)


def test_readyz_names_the_failing_dependency_with_a_fixed_word_and_never_the_error_text():
    def database_answers() -> None:
        raise ConnectionError('connection to "db.internal" as user "oms" password "pg-s3cret" failed')

    with serving(0, broker=lambda: None, database=database_answers) as server:
        ready = httpx.get(f"http://{HOST}:{server.port}/readyz", timeout=10)
        alive = httpx.get(f"http://{HOST}:{server.port}/healthz", timeout=10)

    assert (ready.status_code, ready.text) == (503, "database: unreachable\n")
    assert alive.status_code == 200


def test_a_client_that_never_sends_its_request_is_dropped_and_others_are_still_served():
    with serving(0) as server:
        silent = socket.create_connection((HOST, server.port))
        try:
            assert httpx.get(f"http://{HOST}:{server.port}/healthz", timeout=10).status_code == 200
            silent.settimeout(REQUEST_TIMEOUT_S + 20)
            assert silent.recv(1) == b"", "the server must close a connection that sends nothing"
        finally:
            silent.close()
