"""Throughput, latency and memory of the services against the raw limits of their broker and database."""
