"""The tracker's settings (``OMS_TRACKER_*``, ``OMS_HANDOVER_HORIZON_S``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from shared.settings import SOURCES


class TrackerSettings(BaseSettings):
    model_config = SOURCES

    tracker_batch: int = Field(
        1000,
        ge=1,
        description="Shipments one tracker holds per carrier at once (claimed, not yet "
        "recorded); 1 claims and records one shipment at a time.",
    )
    tracker_lease_s: float = Field(
        60,
        gt=0,
        description="How long a tracker's claim on a shipment lasts; a dead tracker's "
        "shipments are taken over after this.",
    )
    tracker_idle_s: float = Field(1.0, gt=0, description="How long an idle tracker sleeps.")
    tracker_concurrency: int = Field(
        256,
        ge=1,
        description="Carrier requests one tracker keeps in flight per carrier (and its connections to that carrier).",
    )
    tracker_claim_ahead_s: float = Field(
        1.0, gt=0, description="How far ahead a tracker reserves rate-limit slots, and claims shipments for them."
    )
    tracker_slot_tolerance_s: float = Field(
        0.02,
        gt=0,
        description="A request whose rate-limit slot passed longer ago than this takes a new "
        "slot instead of going out late (the limit holds within this fraction).",
    )
    handover_horizon_s: float = Field(
        86400,
        gt=0,
        description="A package handed over (PackageShipped) but still not packed after this "
        "long is reported by the tracker: the `oms_handovers_waiting_for_packing` gauge and a warning "
        "naming the oldest. It keeps waiting either way.",
    )
