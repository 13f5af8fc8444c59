"""The carriers file (TOML): one client per carrier code, built once."""
from __future__ import annotations

import threading
import tomllib
from pathlib import Path

from services.carriers.shipment_flows import CarrierConfig, ShipmentFlowsClient

_FIELDS = {"url", "username", "password", "api_version", "locale", "poll_interval_s",
           "max_requests_per_s", "timeout_s"}


class CarriersFileError(ValueError):
    pass


def load_carriers(path: Path) -> dict[str, CarrierConfig]:
    try:
        document = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CarriersFileError(f"carriers file {path} not found (set OMS_CARRIERS_FILE)") from None
    except tomllib.TOMLDecodeError as exc:
        raise CarriersFileError(f"carriers file {path} is not valid TOML: {exc}") from None
    configs = {}
    for code, table in document.get("carriers", {}).items():
        unknown = set(table) - _FIELDS
        if unknown:
            raise CarriersFileError(f"carrier {code!r}: unknown keys {sorted(unknown)}")
        missing = {"url", "username", "password"} - set(table)
        if missing:
            raise CarriersFileError(f"carrier {code!r}: missing {sorted(missing)}")
        configs[code] = CarrierConfig(code=code, **{k: (str(v) if k == "api_version" else v) for k, v in table.items()})
    return configs


class CarrierDirectory:
    def __init__(self, configs: dict[str, CarrierConfig]):
        self.configs = configs
        self._clients: dict[str, ShipmentFlowsClient] = {}
        self._lock = threading.Lock()

    def __contains__(self, code: object) -> bool:
        return code in self.configs

    def client(self, code: str) -> ShipmentFlowsClient:
        with self._lock:
            if code not in self._clients:
                self._clients[code] = ShipmentFlowsClient(self.configs[code])
            return self._clients[code]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
