"""docs/configuration.md, generated from the settings model so it cannot drift."""

from __future__ import annotations

import json

from pydantic import SecretStr

from services.runtime.settings import ServiceSettings

HEADER = """# Configuration reference

Generated from the settings models (`shared/settings.py` and each service's `settings.py`)
by `oms-shipments docs configuration`; a test fails when this page and the settings disagree. Every variable can also be set in a `.env`
file in the working directory. List values are JSON (`OMS_RETRY_DELAYS_S='[1, 5, 30]'`).

| variable | default | meaning |
|---|---|---|
"""

CARRIERS = """
## The carriers file (`OMS_CARRIERS_FILE`)

```toml
[carriers.sandbox]
url = "http://127.0.0.1:8081"   # the carrier's Shipment Flows base URL
username = "user"               # HTTP Basic
password_env = "OMS_CARRIER_SANDBOX_PASSWORD"   # the password: this environment variable's value,
# password_file = "/run/secrets/sandbox"        # or this file's (a mounted Secret; a final newline dropped),
# password = "secret"                           # or inline (still read, with a warning at start)
api_version = "1"               # sent as x-akinon-api-version
locale = "tr-TR"                # optional, sent in registrations
poll_interval_s = 60            # how soon a shipment is queried again
max_requests_per_s = 50         # the carrier's rate limit, all replicas together
timeout_s = 10                  # optional, per request
omnitron_shipping_company = "sandbox"   # optional: its Omnitron shipping company code (default: the carrier's code)

[carriers.store-courier]        # a courier without integration: never registered, never polled
integration = "none"
omnitron_shipping_company = "store"     # optional, as above
```
"""


def _default(field) -> str:
    value = field.default
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return "—"
    if isinstance(value, (list, dict)):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def configuration_reference() -> str:
    rows = []
    for name, field in ServiceSettings.model_fields.items():
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `OMS_{name.upper()}` | {_default(field)} | {description} |")
    return HEADER + "\n".join(rows) + "\n" + CARRIERS
