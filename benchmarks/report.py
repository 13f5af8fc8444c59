"""The Markdown table: each figure, the raw baseline it is compared with, the ratio, the target."""

from __future__ import annotations

import os
from dataclasses import dataclass

from benchmarks.drains import Drain
from benchmarks.e2e import Burst, Soak

FASTSTREAM_EVENTS_PER_S = 1803  # FastStream's own RabbitMQ benchmark, as it reports it
RSS_LIMIT_MB = 150
FLAT_GROWTH = 0.10  # RSS after the soak at most this much above RSS after one minute


@dataclass
class Results:
    raw: dict[str, float]
    packer: Drain
    shipper: Drain
    omnitron: Drain
    relay: Drain
    burst: Burst
    soak: Soak
    e2e_peaks_kb: dict[str, int]
    handovers: int = 0  # of the shipper drain's events, the PackageShipped ones


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MB"


def _verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def table(r: Results) -> str:
    raw = r.raw
    rows = [
        ("raw: pika consume + INSERT, commit per 100", f"{_n(raw['consume_commit_100'])} msg/s", "—", "1.00", "", ""),
        ("raw: pika consume + INSERT, commit per message", f"{_n(raw['consume_commit_1'])} msg/s", "—", "1.00", "", ""),
        ("raw: pika publish, confirm per message", f"{_n(raw['publish_confirm_each'])} msg/s", "—", "1.00", "", ""),
        ("raw: pika publish, no confirms", f"{_n(raw['publish_no_confirm'])} msg/s", "—", "1.00", "", ""),
        (
            "FastStream's RabbitMQ benchmark (its report, not run here)",
            f"{_n(FASTSTREAM_EVENTS_PER_S)} events/s",
            "—",
            "",
            "",
            "",
        ),
    ]
    packer_ratio = r.packer.rate / raw["consume_commit_100"]
    rows.append(
        (
            f"packer drain: 1 `run packer`, {_n(r.packer.events)} PackagePacked → pending events, relay included",
            f"{_n(r.packer.rate)} events/s ({r.packer.cpu_ms_per_event:.2f} ms CPU each)",
            "consume + commit per 100",
            f"{packer_ratio:.2f}",
            "≥ 0.75×",
            _verdict(packer_ratio >= 0.75),
        )
    )
    shipper_label = (
        f"shipper drain: {_n(r.handovers)} hand-overs, then registrations, carrier at 0 ms"
        if r.handovers
        else "shipper drain: registrations, carrier at 0 ms"
    )
    for label, drain, target in (
        (shipper_label, r.shipper, 1000),
        ("omnitron-publisher drain: Omnitron at 0 ms", r.omnitron, 2000),
    ):
        rows.append(
            (
                f"{label} ({_n(drain.events)} events)",
                f"{_n(drain.rate)} events/s ({drain.cpu_ms_per_event:.1f} ms CPU each)",
                "consume + commit per message",
                f"{drain.rate / raw['consume_commit_1']:.2f}",
                f"≥ {_n(target)}/s",
                _verdict(drain.rate >= target),
            )
        )
    rows.append(
        (
            f"outbox relay: {_n(r.relay.events)} stored events, confirmed publishes",
            f"{_n(r.relay.rate)} msg/s ({r.relay.cpu_ms_per_event:.2f} ms CPU each)",
            "publish, confirm per message",
            f"{r.relay.rate / raw['publish_confirm_each']:.2f}",
            "≥ 5,000 msg/s",
            _verdict(r.relay.rate >= 5000),
        )
    )
    rows.append(
        (
            f"end to end: burst of {_n(r.burst.packages)} packages, PackagePacked → final Omnitron call",
            f"{_n(r.burst.rate)} packages/s",
            "",
            "",
            "≥ 150 packages/s",
            _verdict(r.burst.rate >= 150),
        )
    )
    cores = os.cpu_count() or 1
    budget_ms = cores * 1000 / 150
    per_process = ", ".join(f"{name} {r.burst.cpu_ms_per_package(name):.1f}" for name in r.burst.cpu_s)
    rows.append(
        (
            f"CPU per package in the burst: {per_process} ms; the whole machine (broker, database, "
            f"stand-ins, benchmark, anything else running)",
            f"{r.burst.cpu_ms_per_package():.1f} ms",
            "",
            "",
            f"150 packages/s on {cores} cores leaves {budget_ms:.1f} ms",
            "",
        )
    )
    soak = r.soak
    p99 = soak.percentile(99)
    rows.append(
        (
            f"carrier status observable → Omnitron call, p50 / p95 / p99, at {soak.offered_rate:.0f} packages/s "
            f"for {soak.minutes:g} min ({_n(len(soak.latencies_ms))} statuses)",
            f"{soak.percentile(50):.0f} / {soak.percentile(95):.0f} / {p99:.0f} ms",
            "",
            "",
            "p99 < 500 ms at 100/s",
            _verdict(p99 < 500),
        )
    )
    peaks = {
        "packer drain": r.packer.peak_rss_kb,
        "shipper drain": r.shipper.peak_rss_kb,
        "omnitron-publisher drain": r.omnitron.peak_rss_kb,
        "relay (run packer)": r.relay.peak_rss_kb,
        **{f"{name} (end to end)": kb for name, kb in r.e2e_peaks_kb.items()},
    }
    worst = max(peaks.values())
    rows.append(
        (
            "peak RSS per process: " + ", ".join(f"{k} {_mb(v)}" for k, v in peaks.items()),
            f"max {_mb(worst)}",
            "",
            "",
            f"< {RSS_LIMIT_MB} MB",
            _verdict(worst < RSS_LIMIT_MB * 1024),
        )
    )
    if soak.minutes > 1:
        growth = {name: soak.rss_last(name) / max(1, soak.rss_at(name, 60)) - 1 for name in soak.rss_kb}
        detail = ", ".join(f"{name} {_mb(soak.rss_at(name, 60))} → {_mb(soak.rss_last(name))}" for name in soak.rss_kb)
        rows.append(
            (
                f"RSS after 1 min → after the {soak.minutes:g}-min soak: {detail}",
                f"max {max(growth.values()):+.0%}",
                "",
                "",
                f"flat (≤ {FLAT_GROWTH:+.0%})",
                _verdict(max(growth.values()) <= FLAT_GROWTH),
            )
        )
    else:
        detail = ", ".join(f"{name} {_mb(soak.rss_last(name))}" for name in soak.rss_kb)
        rows.append((f"RSS after 1 min: {detail}", "—", "", "", "flat", "not run (`--soak-minutes 10`)"))
    lines = ["| measurement | result | compared with (raw) | ratio | target | |", "|---|---:|---|---:|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
