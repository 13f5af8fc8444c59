"""``make bench``: every figure of docs/benchmarks.md, measured in one run, side by side.

    .venv/bin/python -m benchmarks.run [--packages 20000] [--soak-minutes 10] [--output FILE]

One vhost and one database of its own, removed afterwards.  The raw baselines run
first, against the same broker and database, then each service drains a backlog, the
relay drains a stored outbox, and the whole pipeline runs a burst and a paced soak.
Run it on a quiet machine: every process here shares the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from benchmarks import drains, e2e, raw, report
from benchmarks.infra import Environment, machine
from benchmarks.standins import CARRIER_PASSWORD, StandIn
from benchmarks.workload import package_packed
from shared import naming


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--packages", type=int, default=20_000, help="PackagePacked in the packer drain and the raw consume baseline"
    )
    parser.add_argument(
        "--service-events", type=int, default=3_000, help="events timed in the shipper and omnitron-publisher drains"
    )
    parser.add_argument("--relay-events", type=int, default=30_000, help="stored events in the relay drain")
    parser.add_argument("--e2e-packages", type=int, default=3_000, help="packages in the end-to-end burst")
    parser.add_argument(
        "--soak-minutes",
        type=float,
        default=1.0,
        help="minutes of the paced end-to-end run (latency, RSS); 10 for the soak figure",
    )
    parser.add_argument(
        "--soak-rate",
        type=float,
        default=None,
        help="packages/s of the paced run (default: 100, or 80%% of the burst rate if lower)",
    )
    parser.add_argument("--poll-interval", type=float, default=1.0, help="the carrier's poll interval, seconds")
    parser.add_argument("--output", type=Path, help="also write the report (Markdown) here")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> str:
    started = time.time()
    about = machine()
    print("measuring on: " + json.dumps(about), file=sys.stderr)
    with Environment() as env, StandIn("carrier") as carrier, StandIn("omnitron") as omnitron:
        env.write_carriers(
            {
                "sandbox": {
                    "url": carrier.url,
                    "username": "bench",
                    "password": CARRIER_PASSWORD,
                    "api_version": "1",
                    "poll_interval_s": args.poll_interval,
                    "max_requests_per_s": 5000,
                }
            }
        )
        bodies = [json.dumps(package_packed(n, "RAW")).encode() for n in range(args.packages)]

        def phase(name: str):
            print(f"[{time.time() - started:6.0f}s] {name} (load {os.getloadavg()[0]:.2f})", file=sys.stderr)

        phase("raw baselines")
        baselines = raw.baselines(
            env, bodies, per_message_count=min(3_000, args.packages), publish_count=min(5_000, args.packages)
        )
        handovers = min(args.service_events, args.packages) // 2
        drains.queue_handovers(env, handovers, "DRAIN")
        phase("packer drain")
        packer = drains.packer(env, args.packages)
        phase("shipper drain")
        shipper = drains.shipper(env, min(args.service_events, args.packages))
        phase("omnitron-publisher drain")
        omnitron_drain = drains.omnitron_publisher(env, omnitron.url, min(args.service_events, args.packages))
        phase("outbox relay")
        relay = drains.relay(env, args.relay_events)
        env.purge(*(naming.work_queue(s) for s in ("packer", "shipper", "omnitron-publisher")))
        phase("end to end: burst")
        pipeline = e2e.Pipeline(env, carrier, omnitron).start()
        try:
            burst = e2e.burst(pipeline, args.e2e_packages)
            rate = args.soak_rate or min(100.0, round(0.8 * burst.rate))
            phase(f"end to end: paced at {rate:g} packages/s for {args.soak_minutes:g} min")
            soak = e2e.soak(pipeline, rate, args.soak_minutes)
            peaks = pipeline.peak_rss()
        finally:
            pipeline.stop()
        results = report.Results(baselines, packer, shipper, omnitron_drain, relay, burst, soak, peaks, handovers)
    load_after = " ".join(f"{v:.2f}" for v in os.getloadavg())
    header = "\n".join(f"- {key}: {value}" for key, value in about.items())
    text = (
        f"{header}\n- load average at the end: {load_after}\n- duration: {(time.time() - started) / 60:.1f} min\n"
        f"- command: `python -m benchmarks.run {' '.join(sys.argv[1:])}`\n\n{report.table(results)}\n"
    )
    return text


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    text = run(args)
    print(text)
    if args.output:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
