"""Every service is declared once, as a spec in the registry, and never imports the wiring back."""

from __future__ import annotations

import ast
from pathlib import Path

from contracts.events import event_type_of_routing_key
from services.runtime.registry import CONSUMERS, SERVICE_NAMES, SERVICES

SERVICES_DIR = Path(__file__).parents[2] / "services"
WIRING = ("services.runtime.bootstrap", "services.runtime.registry")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module} | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }


def test_the_registry_lists_the_four_services_by_the_names_their_specs_give():
    assert SERVICE_NAMES == ("packer", "shipper", "tracker", "omnitron-publisher")
    assert all(spec.name == name for name, spec in SERVICES.items())
    assert CONSUMERS == ("packer", "shipper", "omnitron-publisher")


def test_only_the_packer_batches_and_only_the_omnitron_publisher_orders_by_a_key():
    assert [name for name, spec in SERVICES.items() if spec.batched] == ["packer"]
    assert [name for name, spec in SERVICES.items() if spec.ordering_key] == ["omnitron-publisher"]


def test_every_subscription_names_routing_keys_of_events():
    for spec in SERVICES.values():
        if spec.subscription is not None:
            assert spec.subscription.service == spec.name
            assert all(event_type_of_routing_key(key.replace("*", "pending")) for key in spec.subscription.routing_keys)


def test_no_service_module_imports_the_wiring():
    for path in sorted(SERVICES_DIR.glob("*/*.py")):
        if path.parent.name in ("runtime", "tools"):
            continue
        assert not (_imports(path) & set(WIRING)), f"{path} imports the wiring"
