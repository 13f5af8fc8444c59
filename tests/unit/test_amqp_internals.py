"""The py-amqp and kombu internals our transport (shared/amqp_io.py) and streaming publisher
(shared/confirms.py) lean on are still there: an `amqp` release that drops or reshapes one
fails here, by name, instead of in a running service."""

from __future__ import annotations

import inspect

import amqp
import pytest
from amqp import serialization, spec
from amqp.connection import Connection as AmqpConnection
from amqp.transport import TCPTransport, _AbstractTransport
from kombu.transport import pyamqp


@pytest.mark.parametrize("name", ["_read", "_setup_transport", "write"])
def test_the_tcp_transport_still_has_the_methods_the_read_ahead_transport_overrides_or_calls(name):
    assert callable(getattr(TCPTransport, name, None)), f"amqp.transport.TCPTransport.{name} is gone"


@pytest.mark.parametrize("attribute", ["self._quick_recv", "self._write", "self._read_buffer"])
def test_the_tcp_transport_still_sets_up_the_socket_shortcuts_we_read_and_swap(attribute):
    assert f"{attribute} =" in inspect.getsource(TCPTransport._setup_transport), attribute


def test_the_transport_still_reads_its_partial_frame_through_read_buffer_and_takes_the_eintr_flag():
    source = inspect.getsource(TCPTransport) + inspect.getsource(_AbstractTransport)
    assert "_read_buffer" in source
    assert "raise_on_initial_eintr" in source
    assert list(inspect.signature(TCPTransport._read).parameters)[:3] == ["self", "n", "initial"]


def test_kombus_pyamqp_connection_still_builds_its_transport_with_the_signature_we_override():
    parameters = list(inspect.signature(pyamqp.Connection.Transport).parameters)
    assert parameters[:7] == [
        "self",
        "host",
        "connect_timeout",
        "ssl",
        "read_timeout",
        "write_timeout",
        "socket_settings",
    ]
    assert pyamqp.Transport.Connection is pyamqp.Connection


def test_the_streaming_publisher_still_finds_the_frame_writer_the_publish_method_and_the_serializer():
    assert "frame_writer" in inspect.getsource(AmqpConnection)
    assert spec.Basic.Publish == (60, 40)
    assert callable(serialization.dumps)


def test_the_installed_amqp_is_within_the_range_pyproject_declares():
    major, minor = (int(part) for part in amqp.__version__.split(".")[:2])
    assert (5, 2) <= (major, minor) < (5, 5), amqp.__version__


def test_py_amqp_still_decodes_basic_properties_through_its_table_of_property_decoders():
    assert callable(serialization.decode_properties_basic)
    assert spec.Basic.CLASS_ID in serialization.PROPERTY_CLASSES
    assert "PROPERTY_CLASSES[class_id]" in inspect.getsource(serialization.GenericContent._load_properties)
