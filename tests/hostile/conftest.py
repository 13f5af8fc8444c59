"""The hostile suites' running services: started once per module, shared by all its examples.

The pipeline is the root conftest's ``Pipeline`` (the one the e2e test runs), configured as
docker-compose runs it: the shipper and the Omnitron publisher with four handler threads.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.standins.omnitron import OmnitronStandIn
from services.standins.sandbox_carrier import SandboxCarrier

import harness
from hostile_world import World

ROOT_CONFTEST = Path(__file__).resolve().parent.parent / "conftest.py"
# docker-compose.yml: the services whose handlers wait on HTTP run four handler threads.
SERVICES = (("packer",), ("shipper", "--concurrency", "4"), ("tracker",), ("omnitron-publisher", "--concurrency", "4"))


def _root_conftest(config: pytest.Config):
    """The root conftest module; conftest modules share one module name, so it is looked up as a plugin."""
    return config.pluginmanager.get_plugin(str(ROOT_CONFTEST))


@pytest.fixture(scope="module")
def world(request, tmp_path_factory, migrated_template):
    root = _root_conftest(request.config)
    vhost = harness.create_vhost()
    database = harness.create_database(template=migrated_template)
    with (
        SandboxCarrier(username="user", password=root.CARRIER_PASSWORD) as carrier,
        OmnitronStandIn(token=root.OMNITRON_TOKEN) as omnitron,
    ):
        carrier.fate = lambda order_number: ["SHIPPING", "DELIVERED"]
        pipeline = root.Pipeline(
            tmp_path_factory.mktemp("hostile"),
            harness.amqp_url(vhost),
            harness.database_url(database),
            carrier,
            omnitron,
            poll_interval_s=0.3,
        )
        for service, *args in SERVICES:
            pipeline.start(service, 1, *args)
        world = World(pipeline)
        world.warm_up()
        try:
            yield world
        finally:
            world.close()
            pipeline.stop()
            harness.delete_vhost(vhost)
            harness.drop_database(database)


@pytest.fixture(autouse=True)
def _each_test_on_its_own(request, world):
    """A test starts with every service running and answers only for the exits in its own run;
    the root conftest's report hook adds each service's log tail to a failing test's report."""
    world.revive()
    world.exits.clear()
    request.node.pipelines = [world.pipeline]
