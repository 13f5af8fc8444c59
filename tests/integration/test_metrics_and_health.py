"""Every process serves /metrics, /healthz and /readyz; the counters tell what really happened."""

from __future__ import annotations

import re

import httpx
from prometheus_client.parser import text_string_to_metric_families

from events import package_packed, package_shipped, to_bytes
from harness import wait_until


def _samples(port: int) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _total(samples: dict, name: str, **labels) -> float:
    wanted = set(labels.items())
    return sum(v for (n, labelled), v in samples.items() if n == name and wanted <= set(labelled))


def test_counters_match_what_was_published_and_what_omnitron_received(pipeline):
    pipeline.carrier.fate = lambda order_number: ["SHIPPING", "DELIVERED"]
    pipeline.start_all_services()
    processes = {p.service: p for p in pipeline.processes}
    ports = {
        name: wait_until(lambda p=p: p.metrics_port(), 30, message=f"{name} metrics port")
        for name, p in processes.items()
    }

    for n in range(10):
        packed = package_packed(f"PKG-M{n}", f"ORD-M{n}", [70_000 + n])
        shipped = package_shipped(f"PKG-M{n}")
        pipeline.publisher.publish(
            "package.packed", to_bytes(packed), message_id=packed["id"], event_type="PackagePacked"
        )
        pipeline.publisher.publish(
            "package.shipped", to_bytes(shipped), message_id=shipped["id"], event_type="PackageShipped"
        )
    pipeline.publisher.publish("package.packed", b"{not json", message_id="bad-1", event_type="PackagePacked")

    # pending, registered, shipped, delivered for each package: 4 relays each.
    wait_until(lambda: len(pipeline.omnitron.calls) >= 40, 90, message="40 Omnitron calls")
    wait_until(lambda: _total(_samples(ports["omnitron-publisher"]), "oms_messages_total", outcome="ack") >= 40, 20)

    packer = _samples(ports["packer"])
    assert (
        _total(packer, "oms_messages_total", queue="oms-shipments.packer", event_type="PackagePacked", outcome="ack")
        == 10
    )
    assert _total(packer, "oms_messages_total", queue="oms-shipments.packer", outcome="dead_letter") == 1
    assert _total(packer, "oms_messages_failed_total", error_class="PermanentError") == 1
    assert _total(packer, "oms_handler_seconds_count", queue="oms-shipments.packer") == 11

    shipper = _samples(ports["shipper"])
    assert _total(shipper, "oms_messages_total", event_type="PackageShipped", outcome="ack") == 10
    assert _total(shipper, "oms_messages_total", event_type="ShipmentStatusChanged", outcome="ack") == 10
    assert _total(shipper, "oms_http_client_seconds_count", target="carrier:sandbox", method="POST") == 10

    publisher = _samples(ports["omnitron-publisher"])
    assert _total(publisher, "oms_messages_total", outcome="ack") == 40
    assert _total(publisher, "oms_http_client_seconds_count", target="omnitron") == len(pipeline.omnitron.calls)
    assert _total(publisher, "oms_http_client_seconds_count", target="omnitron", status="200") == 40

    published = sum(_total(_samples(port), "oms_outbox_published_total") for port in ports.values())
    assert published == 40  # every status change left an outbox exactly once

    for port in ports.values():
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
        assert ready.status_code == 200, ready.text
    assert httpx.get(f"http://127.0.0.1:{ports['packer']}/nope").status_code == 404


def test_readyz_says_which_dependency_is_missing_while_healthz_stays_alive(pipeline):
    import harness

    # A database missing at start-up stops `run` at once (tests/integration/test_startup_problems.py):
    # this one goes away after the start.
    process = harness.ServiceProcess("packer", pipeline.env, pipeline.tmp_path / "packer-nodb.log").start()
    pipeline.processes.append(process)
    port = wait_until(lambda: process.metrics_port(), 60, message="metrics port")
    harness.drop_database(pipeline.database_url.rsplit("/", 1)[1])
    wait_until(
        lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 503,
        30,
        message="/readyz without the database",
    )
    ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
    assert ready.status_code == 503
    assert re.search(r"^database: ", ready.text, re.M) and "broker" not in ready.text
    # The dependency and a fixed word: the driver's message names hosts, users and databases.
    assert ready.text == "database: unreachable\n"
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
