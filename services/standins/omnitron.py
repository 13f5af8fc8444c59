"""An Omnitron stand-in: the two order-item endpoints the publisher calls (CONTRACT.md §5).

Errors look like Django REST Framework's (``{"detail": …}``, ``{"field": [...]}``),
as Omnitron's do. Accepted calls are kept in :attr:`OmnitronStandIn.calls` and served
at ``GET /_standin/calls`` so a test in another process can read them.
"""

from __future__ import annotations

import json
import re
from typing import Mapping

from services.standins import Reply, StandInServer, now_iso

_BULK = "/api/i1/order_items/bulk_status_update/"
_ITEM = re.compile(r"^/api/v1/order_items/(?P<id>\d+)/$")


class OmnitronStandIn(StandInServer):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str = "omnitron-token"):
        super().__init__(host, port)
        self._expected_auth = f"Token {token}"
        self.calls: list[dict] = []  # {"method", "path", "body", "at"} of every accepted call
        self.reject_item_ids: set[int] = set()

    def __repr__(self) -> str:
        return f"OmnitronStandIn(url={self.url if self._server else None!r})"

    def subject_of(self, method: str, path: str, body: bytes) -> str | None:
        """The order item a call is about (a bulk call: its first), for :meth:`misbehave`."""
        if (item := _ITEM.match(path)) is not None:
            return item["id"]
        try:
            first = json.loads(body)["orderitem_set"][0]["id"]
        except (ValueError, KeyError, IndexError, TypeError):
            return None
        return str(first) if isinstance(first, int) else None

    def calls_for_item(self, order_item_id: int) -> list[tuple[str, str]]:
        """``("bulk", status code)`` / ``("extra", shipment status)`` for one item, in order."""
        seen = []
        with self._lock:
            calls = list(self.calls)
        for call in calls:
            if call["path"] == _BULK:
                seen += [("bulk", str(e["status"])) for e in call["body"]["orderitem_set"] if e["id"] == order_item_id]
            elif (match := _ITEM.match(call["path"])) and int(match["id"]) == order_item_id:
                shipment = call["body"]["extra_field"].get("shipment") or {}
                seen.append(("extra", str(shipment.get("status", ""))))
        return seen

    def handle(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> Reply:
        if path == "/_standin/calls" and method == "GET":
            with self._lock:
                return 200, list(self.calls), {}
        if headers.get("authorization") != self._expected_auth:
            # DRF answers both a missing and a wrong token like this.
            return 401, {"detail": "Invalid token."}, {"WWW-Authenticate": "Token"}
        item = _ITEM.match(path)
        if path != _BULK and item is None:
            return 404, {"detail": "Not found."}, {}
        if method != "PATCH":
            return 405, {"detail": f'Method "{method}" not allowed.'}, {}
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {"detail": "JSON parse error."}, {}
        if not isinstance(body, dict):
            return 400, {"non_field_errors": ["Invalid data. Expected a dictionary."]}, {}
        if item is not None:
            ids = [int(item["id"])]
            if not isinstance(body.get("extra_field"), dict):
                return 400, {"extra_field": ["This field is required and must be an object."]}, {}
        else:
            entries = body.get("orderitem_set")
            if not isinstance(entries, list) or not entries:
                return 400, {"orderitem_set": ["This field is required and must be a non-empty list."]}, {}
            bad = [
                i
                for i, e in enumerate(entries)
                if not (
                    isinstance(e, dict)
                    and isinstance(e.get("id"), int)
                    and isinstance(e.get("status"), str)
                    and e["status"]
                )
            ]
            if bad:
                return (
                    400,
                    {"orderitem_set": [f"entry {i}: 'id' (int) and 'status' (str) are required" for i in bad]},
                    {},
                )
            ids = [e["id"] for e in entries]
            # One call may carry several packages' items (CONTRACT.md §5), never one item twice.
            twice = sorted({i for i in ids if ids.count(i) > 1})
            if twice:
                return 400, {"orderitem_set": [f"order item {i} appears more than once" for i in twice]}, {}
        refused = sorted(set(ids) & self.reject_item_ids)
        if refused:
            return (
                400,
                {"non_field_errors": [f"Order item {i} cannot be updated: its order is closed." for i in refused]},
                {},
            )
        with self._lock:
            self.calls.append({"method": method, "path": path, "body": body, "at": now_iso()})
        if item is not None:
            return 200, {"pk": ids[0], "extra_field": body["extra_field"]}, {}
        return 200, {"updated": ids}, {}
