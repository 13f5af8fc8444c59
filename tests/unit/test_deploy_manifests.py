"""deploy/: the Kubernetes manifests are valid, agree with the services, and the alert rules
and the dashboard ask only for metrics the services export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from prometheus_client import REGISTRY

import services.omnitron_publisher.settle  # noqa: F401  (registers its metrics)
import services.tracker.metrics  # noqa: F401
import shared.metrics  # noqa: F401
from services.runtime.registry import SERVICE_NAMES
from shared import naming

DEPLOY = Path(__file__).parents[2] / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
K8S_VERSION = "1.30"
# The documents KEDA defines (CRDs, which the Kubernetes schemas do not know): checked by hand below.
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def _kustomization_documents(folder: Path) -> list[dict]:
    """What `kubectl apply -k folder` would apply, less kustomize's generators."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    documents = []
    for resource in kustomization["resources"]:
        path = folder / resource
        if path.is_dir():
            documents += _kustomization_documents(path)
        else:
            documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for generator in kustomization.get("configMapGenerator", []):
        for file in generator["files"]:
            assert (folder / file).is_file(), f"{folder}/{file} named by configMapGenerator is missing"
    return documents


ALL = _kustomization_documents(KUBERNETES / "keda")


def _of_kind(kind: str) -> list[dict]:
    return [d for d in ALL if d["kind"] == kind]


@pytest.mark.parametrize(
    "document", [d for d in ALL if d["kind"] not in KEDA_KINDS], ids=lambda d: f"{d['kind']}/{d['metadata']['name']}"
)
def test_every_kubernetes_manifest_is_valid_against_the_kubernetes_schemas(document):
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_the_base_has_a_deployment_and_a_disruption_budget_per_service_and_the_setup_job():
    deployments = {d["metadata"]["name"]: d for d in _of_kind("Deployment")}
    assert set(deployments) == {f"oms-shipments-{name}" for name in SERVICE_NAMES}
    budgets = {d["metadata"]["name"] for d in _of_kind("PodDisruptionBudget")}
    assert budgets == set(deployments)
    (job,) = _of_kind("Job")
    steps = job["spec"]["template"]["spec"]["initContainers"] + job["spec"]["template"]["spec"]["containers"]
    assert [step["args"] for step in steps] == [["db", "upgrade"], ["topology", "declare"]]


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_each_deployment_runs_its_service_with_probes_a_long_grace_and_secrets_by_reference(service):
    (deployment,) = [d for d in _of_kind("Deployment") if d["metadata"]["name"] == f"oms-shipments-{service}"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:2] == ["run", service]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # The consumer gives handlers 60 s to finish on SIGTERM; the pod must not be killed first.
    assert pod["terminationGracePeriodSeconds"] > 60
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    assert {"secretRef": {"name": "oms-shipments-secrets"}} in container["envFrom"]
    assert "env" not in container, "no value is written into the manifest itself"
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_the_keda_rabbitmq_triggers_watch_the_queues_the_services_declare():
    queues = {}
    for scaled in _of_kind("ScaledObject"):
        assert scaled["apiVersion"] == "keda.sh/v1alpha1"
        target = scaled["spec"]["scaleTargetRef"]["name"]
        assert target in {d["metadata"]["name"] for d in _of_kind("Deployment")}
        assert scaled["spec"]["minReplicaCount"] >= 1, "every process relays its outbox: never scale to zero"
        for trigger in scaled["spec"]["triggers"]:
            if trigger["type"] == "rabbitmq":
                assert trigger["authenticationRef"]["name"] in {
                    d["metadata"]["name"] for d in _of_kind("TriggerAuthentication")
                }
                assert trigger["metadata"]["mode"] == "QueueLength" and int(trigger["metadata"]["value"]) > 0
                queues[target] = trigger["metadata"]["queueName"]
            else:
                assert trigger["type"] == "prometheus" and "oms_tracker_due_backlog" in trigger["metadata"]["query"]
    consumers = [name for name in SERVICE_NAMES if name != "tracker"]
    assert queues == {f"oms-shipments-{name}": naming.work_queue(name) for name in consumers}


def _exported_metric_names() -> set[str]:
    """Every series name /metrics can carry, labelled metrics included before their first sample."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
        "summary": ("", "_sum", "_count", "_created"),
    }
    names = set()
    for family in REGISTRY.collect():
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return {n for n in names if n.startswith("oms_")}


def _oms_metrics_in(expression: str) -> set[str]:
    return set(re.findall(r"\boms_[a-z0-9_]+", expression))


def test_alert_rules_name_only_metrics_the_services_export():
    rules = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())
    exported = _exported_metric_names()
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert {
        "OmsQueueLag",
        "OmsDeadLetters",
        "OmsOutboxBacklog",
        "OmsStaleShipments",
        "OmsCarrierPaused",
        "OmsHandoversWaitingForPacking",
    } <= {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    used = set().union(*map(_oms_metrics_in, expressions))
    assert used and used <= exported, f"not exported: {sorted(used - exported)}"


def test_the_dashboard_names_only_metrics_the_services_export():
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = set().union(*map(_oms_metrics_in, expressions))
    exported = _exported_metric_names()
    assert used and used <= exported, f"not exported: {sorted(used - exported)}"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_carriers_configmap_holds_no_password_only_references_to_the_secrets_keys(tmp_path):
    """The carriers file is a ConfigMap: each password is named (password_env), and the Secret
    every Deployment takes as environment variables has that key."""
    import tomllib

    from services.carriers.directory import load_carriers

    base = KUBERNETES / "base"
    carriers = tomllib.loads((base / "carriers.toml").read_text())["carriers"]
    secret = yaml.safe_load((base / "secret.example.yaml").read_text())
    for code, table in carriers.items():
        assert "password" not in table, f"carrier {code}: a password written into the ConfigMap"
        assert table.get("password_env") in secret["stringData"], f"carrier {code}: its password_env is no Secret key"
    loaded = load_carriers(base / "carriers.toml", environ=secret["stringData"])
    assert {code: config.password for code, config in loaded.items()} == {
        code: secret["stringData"][table["password_env"]] for code, table in carriers.items()
    }
    for deployment in _of_kind("Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert {"secretRef": {"name": secret["metadata"]["name"]}} in container["envFrom"]
