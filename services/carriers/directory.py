"""The carriers file (TOML): one client per carrier code, built once."""
from __future__ import annotations

import threading
import tomllib
from pathlib import Path

from services.carriers.async_client import AsyncShipmentFlowsClient
from services.carriers.shipment_flows import CarrierConfig, ShipmentFlowsClient
from shared.http import DEFAULT_MAX_RETRY_AFTER_S

_NUMBER_FIELDS = ("poll_interval_s", "max_requests_per_s", "timeout_s",
                  # the tracker's (CarrierConfig says what each one means)
                  "max_requests_per_day", "near_delivery_poll_interval_s", "quiet_after_s",
                  "max_poll_interval_s", "max_tracking_age_s")
_TEXT_FIELDS = ("url", "username", "password", "locale")
_FIELDS = {"api_version", *_TEXT_FIELDS, *_NUMBER_FIELDS}


class CarriersFileError(ValueError):
    pass


class Carriers(dict):
    """The integrated carriers by code (``CarrierConfig``), and ``manual``: the codes of the
    carriers without integration (``integration = "none"``: never registered, never polled)."""

    def __init__(self, configs=(), manual=()):
        super().__init__(configs)
        self.manual = frozenset(manual)


#: What a carrier without integration may say: it has no url, username or password.
_MANUAL_FIELDS = {"integration"}


def load_carriers(path: Path) -> dict[str, CarrierConfig]:
    try:
        document = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CarriersFileError(f"carriers file {path} not found (set OMS_CARRIERS_FILE)") from None
    except tomllib.TOMLDecodeError as exc:
        raise CarriersFileError(f"carriers file {path} is not valid TOML: {exc}") from None
    carriers = document.get("carriers", {})
    if not isinstance(carriers, dict):
        raise CarriersFileError(f"carriers file {path}: 'carriers' must be a table of carrier tables")
    configs, manual = {}, []
    for code, table in carriers.items():
        if not isinstance(table, dict):
            raise CarriersFileError(f"carrier {code!r}: expected a table [carriers.{code}], got {table!r:.80}")
        if "integration" in table:
            if table["integration"] != "none":
                raise CarriersFileError(f"carrier {code!r}: integration must be \"none\" (a carrier without "
                                        f"integration) or left out, got {table['integration']!r:.80}")
            unknown = set(table) - _MANUAL_FIELDS
            if unknown:
                raise CarriersFileError(f"carrier {code!r}: a carrier without integration takes no "
                                        f"{sorted(unknown)}")
            manual.append(code)
            continue
        unknown = set(table) - _FIELDS
        if unknown:
            raise CarriersFileError(f"carrier {code!r}: unknown keys {sorted(unknown)}")
        missing = {"url", "username", "password"} - set(table)
        if missing:
            raise CarriersFileError(f"carrier {code!r}: missing {sorted(missing)}")
        _check_values(code, table)
        configs[code] = CarrierConfig(code=code, **{k: (str(v) if k == "api_version" else v) for k, v in table.items()})
    if not configs and not manual:
        raise CarriersFileError(f"carriers file {path} defines no carrier: add a [carriers.<code>] table")
    return Carriers(configs, manual)


def _check_values(code: str, table: dict) -> None:
    # Caught here, not as a TypeError deep in the tracker or the HTTP client.
    for key in _TEXT_FIELDS:
        if key in table and not isinstance(table[key], str):
            raise CarriersFileError(f"carrier {code!r}: {key} must be a string, got {table[key]!r:.80}")
    for key in _NUMBER_FIELDS:
        value = table.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise CarriersFileError(f"carrier {code!r}: {key} must be a positive number, got {value!r:.80}")


class CarrierDirectory:
    def __init__(self, configs: dict[str, CarrierConfig], max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S):
        self.configs = configs
        #: carriers without integration: known codes, never registered or polled
        self.manual = frozenset(getattr(configs, "manual", ()))
        self.max_retry_after_s = max_retry_after_s
        self._clients: dict[str, ShipmentFlowsClient] = {}
        self._lock = threading.Lock()

    def __contains__(self, code: object) -> bool:
        return code in self.configs or code in self.manual

    def integrated(self, code: str) -> bool:
        """Whether the carrier has an extension (registration, queries); False for ``integration = "none"``."""
        return code in self.configs

    def open_async(self, code: str, max_connections: int = 256) -> AsyncShipmentFlowsClient:
        """A new asyncio client for one event loop; the caller closes it (``aclose``)."""
        return AsyncShipmentFlowsClient(self.configs[code], max_connections=max_connections,
                                        max_retry_after_s=self.max_retry_after_s)

    def client(self, code: str) -> ShipmentFlowsClient:
        with self._lock:
            if code not in self._clients:
                self._clients[code] = ShipmentFlowsClient(self.configs[code], max_retry_after_s=self.max_retry_after_s)
            return self._clients[code]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
