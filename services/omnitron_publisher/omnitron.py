"""Omnitron calls for a shipment status change (CONTRACT.md §5).

:func:`plan_calls` decides, purely, which requests a change becomes;
:class:`OmnitronClient` sends one of them. Keeping the two apart lets the publisher
record what it is about to send before sending it, and lets tests compare whole plans.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Mapping

import structlog

from contracts import OMNITRON_ITEM_STATUS, ShipmentStatusChanged
from services.commands.omnitron_fields import also_extra_field, extra_field_details
from shared.http import (
    DEFAULT_MAX_RETRY_AFTER_S,
    BoundedClient,
    TransientHTTPError,
    call_with_retries,
    raise_for_response,
    redact_url,
    request_bounded,
)
from shared.logging import register_secrets
from shared.metrics import observe_http

log = structlog.get_logger(__name__)

BULK_STATUS_PATH = "/api/i1/order_items/bulk_status_update/"
ORDER_ITEM_PATH = "/api/v1/order_items/{id}/"


@dataclass(frozen=True)
class OmnitronCall:
    method: str
    path: str
    body: dict
    order_item_ids: tuple[int, ...]

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "path": self.path,
            "body": self.body,
            "order_item_ids": list(self.order_item_ids),
        }

    @classmethod
    def from_json(cls, stored: dict) -> "OmnitronCall":
        return cls(stored["method"], stored["path"], stored["body"], tuple(stored["order_item_ids"]))


@dataclass(frozen=True)
class Sent:
    """Omnitron's answer to a call. ``unsettled``: an earlier attempt of it got no answer
    and may still take effect at Omnitron, later than this one (see services/omnitron_publisher/settle.py)."""

    status: int
    unsettled: bool = False


def utc_iso(moment: datetime) -> str:
    """ISO-8601 in UTC with a ``Z``; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def plan_calls(change: ShipmentStatusChanged, companies: Mapping[str, str] | None = None) -> list[OmnitronCall]:
    """The Omnitron requests that relay ``change``; empty when it names no order item.

    ``companies``: each carrier's Omnitron shipping company code (the carriers file's
    ``omnitron_shipping_company``); a carrier without one is named by its own code."""
    item_ids = tuple(dict.fromkeys(change.order_item_ids))  # a repeated id would be sent twice
    if not item_ids:
        return []
    code = OMNITRON_ITEM_STATUS.get(change.status)
    if code is not None:
        # One call for the whole package, so its items change status together.
        entries = []
        for item_id in item_ids:
            entry: dict = {"id": item_id, "status": code}
            # Omitted rather than null: a status arriving before the registration must
            # not blank a tracking number Omnitron may already show.
            if change.tracking_number:
                entry["tracking_number"] = change.tracking_number
            entry["shipping_company"] = (companies or {}).get(change.carrier, change.carrier)
            entries.append(entry)
        bulk = [OmnitronCall("PATCH", BULK_STATUS_PATH, {"orderitem_set": entries}, item_ids)]
        if not also_extra_field(change):  # operator commands (services/commands/omnitron_fields.py)
            return bulk
        return bulk + _extra_field_calls(change, item_ids)
    return _extra_field_calls(change, item_ids)


def _extra_field_calls(change: ShipmentStatusChanged, item_ids: tuple[int, ...]) -> list[OmnitronCall]:
    shipment = {
        "status": change.status.value,
        "tracking_number": change.tracking_number,
        "tracking_url": change.tracking_url,
        "carrier": change.carrier,
        "changed_at": utc_iso(change.changed_at),
        "sequence": change.sequence,
        **extra_field_details(change),
    }
    return [
        OmnitronCall("PATCH", ORDER_ITEM_PATH.format(id=item_id), {"extra_field": {"shipment": shipment}}, (item_id,))
        for item_id in item_ids
    ]


class OmnitronClient:
    """Sends planned calls. 429/5xx/timeouts are retried here a few times; what is
    still failing afterwards surfaces as ``TransientHTTPError`` for the caller's
    own, unbounded, retry; other 4xx as ``PermanentHTTPError`` with Omnitron's answer."""

    def __init__(
        self,
        base_url: str,
        token: str,
        http: BoundedClient | None = None,
        timeout_s: float = 10.0,
        retry_attempts: int = 5,
        max_wait_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S,
    ):
        register_secrets(token)
        self.base_url = base_url.rstrip("/")
        self._authorization = f"Token {token}"
        self._owns_http = http is None
        # Omnitron's answer is only read for its status and, on a refusal, its reason: it is
        # held to the same bounds as a carrier's (the whole answer within the timeout, 1 MiB).
        self._http = http or BoundedClient()
        self._timeout_s = timeout_s
        self._max_retry_after_s = max_retry_after_s
        self._retry_attempts = retry_attempts
        self._max_wait_s = max_wait_s
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"OmnitronClient(base_url={redact_url(self.base_url)!r})"

    def send(self, call: OmnitronCall) -> Sent:
        """Send one call; Omnitron's successful answer. A failure raised after an attempt that
        may have arrived is ``ambiguous``, whichever attempt failed last."""
        url = self.base_url + call.path
        unsettled = False

        def note(failure: TransientHTTPError) -> None:
            nonlocal unsettled
            unsettled = unsettled or failure.ambiguous
            failure.ambiguous = unsettled

        headers = {"authorization": self._authorization, "accept": "application/json"}

        def attempt() -> int:
            started = time.monotonic()
            response = request_bounded(
                self._http, call.method, url, total_s=self._timeout_s, json=call.body, headers=headers
            )
            observe_http("omnitron", call.method, response.status_code, time.monotonic() - started)
            log.debug(
                "omnitron.request",
                method=call.method,
                path=call.path,
                order_item_ids=list(call.order_item_ids),
                status=response.status_code,
                elapsed_ms=round((time.monotonic() - started) * 1000, 1),
            )
            raise_for_response(response, self._max_retry_after_s)
            return response.status_code

        status = call_with_retries(
            attempt, attempts=self._retry_attempts, max_wait_s=self._max_wait_s, sleep=self._sleep, on_failure=note
        )
        return Sent(status, unsettled)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> "OmnitronClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
