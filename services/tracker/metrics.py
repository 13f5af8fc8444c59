"""The tracker's Prometheus metrics (exposed with the others on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

POLLS = Counter(
    "oms_tracker_polls_total",
    "Carrier queries made by the tracker, by outcome (unchanged, changed, failed).",
    ["carrier", "outcome"],
)
HISTORY_FETCHES = Counter(
    "oms_tracker_history_fetches_total", "Carrier history requests, by outcome.", ["carrier", "outcome"]
)
STALE = Counter(
    "oms_tracker_stale_shipments_total",
    "Shipments given up because they passed max_tracking_age_s without a final status.",
    ["carrier"],
)
DUE_BACKLOG = Gauge("oms_tracker_due_backlog", "Shipments due for a poll and not yet claimed.", ["carrier"])
LATE_SLOTS = Counter(
    "oms_tracker_late_slots_total",
    "Requests not sent because their rate-limit slot had passed by more than the tolerance (they take a new slot).",
    ["carrier"],
)
CARRIER_PAUSES = Counter(
    "oms_tracker_carrier_pauses_total", "Times a carrier was paused (Retry-After or backoff).", ["carrier", "reason"]
)
HANDOVERS_WAITING = Gauge(
    "oms_handovers_waiting_for_packing",
    "Packages handed over (PackageShipped) longer ago than the hand-over "
    "horizon whose PackagePacked has not arrived; they wait, never dropped, but someone should look.",
)
