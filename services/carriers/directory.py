"""The carriers file (TOML): one client per carrier code, built once.

A carrier's password is given by reference, so that the file itself holds no secret (it is
a Kubernetes ConfigMap in deploy/kubernetes): ``password_env = "OMS_CARRIER_X_PASSWORD"``
names an environment variable, ``password_file = "/run/secrets/x"`` a file (a mounted
Secret; one trailing newline is not part of it). ``password = "..."`` inline still works,
with a warning. Exactly one of the three; errors name the variable or the file, never a value.
"""

from __future__ import annotations

import os
import re
import threading
import tomllib
from collections.abc import Mapping
from pathlib import Path

import structlog

from services.carriers.async_client import AsyncShipmentFlowsClient
from services.carriers.shipment_flows import CarrierConfig, ShipmentFlowsClient
from shared.http import DEFAULT_MAX_RETRY_AFTER_S

_NUMBER_FIELDS = (
    "poll_interval_s",
    "max_requests_per_s",
    "timeout_s",
    # the tracker's (CarrierConfig says what each one means)
    "max_requests_per_day",
    "near_delivery_poll_interval_s",
    "quiet_after_s",
    "max_poll_interval_s",
    "max_tracking_age_s",
)
_TEXT_FIELDS = ("url", "username", "password", "locale")
_PASSWORD_SOURCES = ("password", "password_env", "password_file")
_FIELDS = {"api_version", *_TEXT_FIELDS, *_NUMBER_FIELDS, *_PASSWORD_SOURCES}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_MAX_PASSWORD_FILE_BYTES = 64 * 1024
#: Carriers whose password is written inline, warned about when their client is first made
#: (after the start-up line, which names the metrics port and must come first).
_inline: set[CarrierConfig] = set()
log = structlog.get_logger(__name__)


class CarriersFileError(ValueError):
    pass


class Carriers(dict):
    """The integrated carriers by code (``CarrierConfig``), and ``manual``: the codes of the
    carriers without integration (``integration = "none"``: never registered, never polled);
    ``omnitron_companies``: the Omnitron shipping company code of each carrier that names one."""

    def __init__(self, configs=(), manual=(), omnitron_companies=None):
        super().__init__(configs)
        self.manual = frozenset(manual)
        self.omnitron_companies = dict(omnitron_companies or {})


#: CONTRACT.md §5: the carrier's Omnitron shipping company code (default: the carrier's own code).
_COMPANY_FIELD = "omnitron_shipping_company"
_MAX_COMPANY_CODE = 255
#: What a carrier without integration may say: it has no url, username or password.
_MANUAL_FIELDS = {"integration", _COMPANY_FIELD}


def load_carriers(path: Path, environ: Mapping[str, str] | None = None) -> dict[str, CarrierConfig]:
    environ = os.environ if environ is None else environ
    try:
        document = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CarriersFileError(f"carriers file {path} not found (set OMS_CARRIERS_FILE)") from None
    except tomllib.TOMLDecodeError as exc:
        raise CarriersFileError(f"carriers file {path} is not valid TOML: {exc}") from None
    carriers = document.get("carriers", {})
    if not isinstance(carriers, dict):
        raise CarriersFileError(f"carriers file {path}: 'carriers' must be a table of carrier tables")
    configs, manual, companies = {}, [], {}
    for code, table in carriers.items():
        if not isinstance(table, dict):
            raise CarriersFileError(f"carrier {code!r}: expected a table [carriers.{code}], got {table!r:.80}")
        if _COMPANY_FIELD in table:
            table = dict(table)
            companies[code] = _company_code(code, table.pop(_COMPANY_FIELD))
        if "integration" in table:
            if table["integration"] != "none":
                raise CarriersFileError(
                    f'carrier {code!r}: integration must be "none" (a carrier without '
                    f"integration) or left out, got {table['integration']!r:.80}"
                )
            unknown = set(table) - _MANUAL_FIELDS
            if unknown:
                raise CarriersFileError(f"carrier {code!r}: a carrier without integration takes no {sorted(unknown)}")
            manual.append(code)
            continue
        unknown = set(table) - _FIELDS
        if unknown:
            raise CarriersFileError(f"carrier {code!r}: unknown keys {sorted(unknown)}")
        missing = {"url", "username"} - set(table)
        if missing:
            raise CarriersFileError(f"carrier {code!r}: missing {sorted(missing)}")
        _check_values(code, table)
        inline = "password" in table
        table = {**table, "password": _password(path, code, table, environ)}
        table.pop("password_env", None)
        table.pop("password_file", None)
        configs[code] = CarrierConfig(code=code, **{k: (str(v) if k == "api_version" else v) for k, v in table.items()})
        if inline:
            _inline.add(configs[code])
    if not configs and not manual:
        raise CarriersFileError(f"carriers file {path} defines no carrier: add a [carriers.<code>] table")
    return Carriers(configs, manual, companies)


def _company_code(code: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_COMPANY_CODE:
        raise CarriersFileError(
            f"carrier {code!r}: {_COMPANY_FIELD} must be an Omnitron shipping company code "
            f"(text of 1 to {_MAX_COMPANY_CODE} characters), got {value!r:.80}"
        )
    return value


def _password(path: Path, code: str, table: dict, environ: Mapping[str, str]) -> str:
    """The carrier's password from the one place its table names."""
    given = [key for key in _PASSWORD_SOURCES if key in table]
    if not given:
        raise CarriersFileError(
            f"carrier {code!r}: missing its password: password_env (an environment variable) "
            "or password_file (a file, e.g. a mounted Secret)"
        )
    if len(given) > 1:
        raise CarriersFileError(f"carrier {code!r}: {' and '.join(given)} both given; keep one")
    (key,) = given
    if key == "password":
        return table["password"]
    if key == "password_env":
        name = table[key]
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise CarriersFileError(
                f"carrier {code!r}: password_env must name an environment variable, got {str(name)[:80]!r}"
            )
        value = environ.get(name)
        if not value:
            raise CarriersFileError(f"carrier {code!r}: password_env names {name}, which is not set or empty")
        return value
    file = table[key]
    if not isinstance(file, str) or not file:
        raise CarriersFileError(f"carrier {code!r}: password_file must be a path")
    try:
        with open(file, "rb") as handle:
            raw = handle.read(_MAX_PASSWORD_FILE_BYTES + 1)
    except OSError as exc:
        raise CarriersFileError(
            f"carrier {code!r}: password_file {file[:200]} cannot be read ({exc.strerror or type(exc).__name__})"
        ) from None
    if len(raw) > _MAX_PASSWORD_FILE_BYTES:
        raise CarriersFileError(
            f"carrier {code!r}: password_file {file[:200]} is over {_MAX_PASSWORD_FILE_BYTES} bytes"
        )
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CarriersFileError(f"carrier {code!r}: password_file {file[:200]} is not UTF-8 text") from None
    value = value[:-2] if value.endswith("\r\n") else value[:-1] if value.endswith("\n") else value
    if not value:
        raise CarriersFileError(f"carrier {code!r}: password_file {file[:200]} is empty")
    return value


def _check_values(code: str, table: dict) -> None:
    # Caught here, not as a TypeError deep in the tracker or the HTTP client.
    for key in _TEXT_FIELDS:
        if key in table and not isinstance(table[key], str):
            if key == "password":  # never repeated: it may be the secret, only mistyped
                raise CarriersFileError(f"carrier {code!r}: password must be a string")
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
        #: each carrier's Omnitron shipping company code, where the carriers file names one
        self.omnitron_companies: dict[str, str] = dict(getattr(configs, "omnitron_companies", {}))
        self.max_retry_after_s = max_retry_after_s
        self._clients: dict[str, ShipmentFlowsClient] = {}
        self._lock = threading.Lock()

    def __contains__(self, code: object) -> bool:
        return code in self.configs or code in self.manual

    def integrated(self, code: str) -> bool:
        """Whether the carrier has an extension (registration, queries); False for ``integration = "none"``."""
        return code in self.configs

    def _warn_if_inline(self, code: str) -> None:
        config = self.configs[code]
        if config in _inline:
            _inline.discard(config)
            log.warning(
                "a carrier password is written in the carriers file; name it by reference instead "
                "(password_env or password_file)",
                carrier=code,
            )

    def open_async(self, code: str, max_connections: int = 256) -> AsyncShipmentFlowsClient:
        """A new asyncio client for one event loop; the caller closes it (``aclose``)."""
        self._warn_if_inline(code)
        return AsyncShipmentFlowsClient(
            self.configs[code], max_connections=max_connections, max_retry_after_s=self.max_retry_after_s
        )

    def client(self, code: str) -> ShipmentFlowsClient:
        with self._lock:
            if code not in self._clients:
                self._warn_if_inline(code)
                self._clients[code] = ShipmentFlowsClient(self.configs[code], max_retry_after_s=self.max_retry_after_s)
            return self._clients[code]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
