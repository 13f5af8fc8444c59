"""docker-compose.yml must speak the CLI and the settings we actually have."""

from __future__ import annotations

from pathlib import Path

import typer.main
import yaml

from services.carriers.directory import load_carriers
from services.runtime.settings import ServiceSettings as Settings
from services.tools.cli import app

ROOT = Path(__file__).parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
OURS = {name: spec for name, spec in COMPOSE["services"].items() if spec.get("build")}


def _resolve(command: list[str]):
    """Walks the Typer app like a shell would; fails on an unknown command or option."""
    group = typer.main.get_command(app)
    args = list(command)
    while hasattr(group, "commands") and args and not args[0].startswith("-"):
        name = args.pop(0)
        assert name in group.commands, f"no command {name!r} in {sorted(group.commands)}"
        group = group.commands[name]
    context = group.make_context("oms-shipments", args, resilient_parsing=False)
    assert context is not None
    return group


def test_every_compose_command_is_a_real_cli_command_with_real_options():
    assert OURS, "compose defines our services"
    for spec in OURS.values():
        _resolve(spec["command"])


def test_the_run_services_cover_all_four_services():
    run_targets = {spec["command"][1] for spec in OURS.values() if spec["command"][0] == "run"}
    assert run_targets == {"packer", "shipper", "tracker", "omnitron-publisher"}


def test_every_oms_variable_in_compose_is_a_setting():
    known = {f"OMS_{field.upper()}" for field in Settings.model_fields}
    for name, spec in OURS.items():
        for variable in spec.get("environment", {}):
            if variable.startswith("OMS_"):
                assert variable in known, f"{name}: {variable} is not a setting"


def test_compose_settings_parse_and_the_carriers_file_loads():
    for spec in OURS.values():
        environment = {k: v for k, v in spec.get("environment", {}).items() if k.startswith("OMS_")}
        Settings(**{k.removeprefix("OMS_").lower(): v for k, v in environment.items()})
    carriers = load_carriers(ROOT / "deploy" / "carriers.toml")
    assert "sandbox" in carriers


def test_prometheus_scrapes_the_port_the_services_serve_metrics_on():
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    ports = {sd["port"] for job in scrape["scrape_configs"] for sd in job["dns_sd_configs"]}
    served = {int(spec["environment"]["OMS_METRICS_PORT"]) for spec in OURS.values() if spec["command"][0] == "run"}
    assert ports == served


def test_the_broker_refuses_messages_far_over_the_body_limit_so_a_consumer_holds_at_most_prefetch_times_that():
    from contracts.envelope import MAX_BODY_BYTES

    mounts = COMPOSE["services"]["rabbitmq"]["volumes"]
    (config,) = [m.split(":")[0] for m in mounts if m.split(":")[1].startswith("/etc/rabbitmq/conf.d/")]
    lines = [
        line.split("=", 1)
        for line in (ROOT / config).read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    settings = {key.strip(): value.strip() for key, value in lines}
    assert MAX_BODY_BYTES < int(settings["max_message_size"]) <= 4 * MAX_BODY_BYTES


def test_every_service_gets_longer_to_stop_than_its_drain_and_prometheus_loads_the_alert_rules():
    runners = [spec for spec in OURS.values() if spec["command"][0] == "run"]
    assert runners and all(int(spec["stop_grace_period"].rstrip("s")) > 60 for spec in runners)
    prometheus = COMPOSE["services"]["prometheus"]
    assert "./deploy/prometheus-alerts.yml:/etc/prometheus/alerts.yml:ro" in prometheus["volumes"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
