"""The exported contract documents: valid AsyncAPI 3.0, and true to the topology really declared."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import jsonschema
import pytest

from services.tools.asyncapi import asyncapi_document

import harness

ASYNCAPI_SCHEMA = json.loads((Path(__file__).parents[1] / "fixtures" / "asyncapi-3.0.0.schema.json").read_text())


def _errors(document: dict) -> list[str]:
    return [error.message for error in jsonschema.Draft7Validator(ASYNCAPI_SCHEMA).iter_errors(document)]


def test_the_asyncapi_document_validates_against_the_published_asyncapi_3_schema():
    assert _errors(asyncapi_document()) == []


def test_the_schema_check_would_catch_a_broken_document():
    broken = copy.deepcopy(asyncapi_document())
    next(iter(broken["operations"].values()))["action"] = "publish"  # AsyncAPI 2 wording
    assert _errors(broken)


def test_contracts_export_writes_the_event_schemas_and_the_asyncapi_document(tmp_path):
    result = subprocess.run([str(harness.BIN), "contracts", "export", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "schemas").iterdir()) == [
        "PackageCancelled.schema.json",
        "PackagePacked.schema.json",
        "PackageShipped.schema.json",
        "ShipmentInfoUpdated.schema.json",
        "ShipmentStatusChanged.schema.json",
        "ShipmentStatusSet.schema.json",
    ]
    assert json.loads((tmp_path / "asyncapi.json").read_text()) == json.loads(json.dumps(asyncapi_document()))


def _declared_bindings(vhost: str) -> set[tuple[str, str]]:
    out = harness.rabbitmqctl(
        "list_bindings", "-p", vhost, "--quiet", "--no-table-headers", "source_name", "destination_name", "routing_key"
    )
    bindings = set()
    for line in out.splitlines():
        source, destination, key = (line.split("\t") + ["", "", ""])[:3]
        if source == "oms.events":
            bindings.add((destination, key))
    return bindings


def _declared_queues(vhost: str) -> set[str]:
    out = harness.rabbitmqctl("list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name")
    return {line.strip() for line in out.splitlines() if line.strip()}


@pytest.fixture
def vhost():
    name = harness.create_vhost()
    yield name
    harness.delete_vhost(name)


def test_the_asyncapi_document_names_exactly_the_queues_and_bindings_topology_declare_creates(vhost, tmp_path):
    env = {"OMS_AMQP_URL": harness.amqp_url(vhost), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([str(harness.BIN), "topology", "declare"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    document = asyncapi_document()
    documented_bindings = {
        (channel["address"], binding["routingKey"])
        for channel in document["channels"].values()
        for binding in channel.get("x-oms-bindings", [])
    }
    documented_queues = {
        channel["bindings"]["amqp"]["queue"]["name"]
        for channel in document["channels"].values()
        if channel["bindings"]["amqp"]["is"] == "queue"
    }
    assert documented_bindings == _declared_bindings(vhost)
    declared = _declared_queues(vhost)
    # Retry queues are plumbing behind the work queues; every other queue is documented.
    assert documented_queues == {q for q in declared if ".delay." not in q}
    assert all(q.endswith(".dlq") for q in documented_queues if "dlq" in q)
